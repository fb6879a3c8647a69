"""Base models of the mini-world, trained from scratch with the standard classes and `transformers.Trainer`.

- NMT: `M2M100ForConditionalGeneration` + `NllbTokenizer` (the world's codes + `eng_Latn`): NLLB-200's classes.
- LLM: `LlamaForCausalLM` + a `PreTrainedTokenizerFast` (Metaspace BPE with a fused `<unk>`, English only): an
  English-only reasoner, like the frozen LLM of the paper. Llama rather than Qwen2: transformers 5 loads any
  `qwen2` checkpoint's tokenizer as the byte-level `Qwen2Tokenizer`, whatever tokenizer.json holds.
Both are saved with `save_pretrained` (model, tokenizer, generation_config), so the rest of the pipeline loads
them exactly like `facebook/nllb-200-*` and `Qwen/Qwen2.5-*`.

Tiny models learn fast here because the vocabularies are small (whole words are single tokens), sequences are
short, and the learning rate is high with a short warmup. On CPU everything is fp32.
"""

from __future__ import annotations

import json
import random
import time
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    DataCollatorForSeq2Seq,
    GenerationConfig,
    M2M100Config,
    M2M100ForConditionalGeneration,
    NllbTokenizer,
    PreTrainedTokenizerFast,
    AutoConfig,
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Tokenizer,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    get_constant_schedule,
)
from transformers.trainer_callback import PrinterCallback

from . import experiments
from .jobs import report_progress
from .nllb_tokenizer import train_nllb_tokenizer
from .runs import mark_done, read_jsonl, reuse
from .world import ENGLISH, LLM_PROMPT

def trained_with(out: Path, cfg: BaseConfig, prefix: str) -> bool:
    """Whether `out` holds a finished base trained with `cfg`'s `prefix` fields (and its max_len and seed). A base
    trained with other settings stops the run: a changed recipe must not silently pick up the old base."""
    return reuse(out, "config", cfg, lambda recorded, now: changed_settings(recorded or {}, now, prefix))


def changed_settings(recorded: dict, cfg: BaseConfig, prefix: str) -> dict:
    """{field: (then, now)} of `cfg`'s `prefix` fields (and max_len, seed) that differ from a base's `recorded`
    config; a field added after the base was trained has its default there (defaults keep the old behaviour)."""
    then = {f.name: f.default for f in fields(BaseConfig)} | recorded
    return {k: (then[k], v) for k, v in asdict(cfg).items()
            if (k.startswith(prefix) or k in ("max_len", "seed")) and then[k] != v}


@dataclass
class BaseConfig:
    """Sizes and schedules of both bases (defaults: the main job; `fast()`: the CI variant)."""

    # NMT (NLLB architecture)
    nmt_vocab: int = 3000
    nmt_d_model: int = 128
    nmt_layers: int = 3
    nmt_ffn: int = 512
    nmt_heads: int = 4
    nmt_steps: int = 2000
    nmt_batch: int = 64
    nmt_lr: float = 2e-3
    # NLLB-200 up-samples low-resource pairs (temperature sampling); here: the low-resource language's few pairs
    # are repeated this many times in the training mix (its data stays small: no new sentences are added)
    nmt_low_resource_upsample: int = 4
    # LLM (Llama architecture): wide and shallow learned the copy-and-compute faster than deep and narrow
    llm_vocab: int = 700
    llm_d_model: int = 192
    llm_layers: int = 2
    llm_ffn: int = 768
    llm_heads: int = 6
    llm_steps: int = 2600
    llm_batch: int = 16
    llm_lr: float = 2e-3
    max_len: int = 128
    seed: int = 0
    # copy warm-up (general LLMs): steps on documents of random words repeated (`copy_documents`) before the world's
    # data, and their share kept in that data so the circuit stays; 0 / 0.0: none (the first world's LLM)
    llm_copy_warmup_steps: int = 0
    llm_copy_fraction: float = 0.0
    # the warm-up goes on in rounds of `llm_copy_warmup_steps` (fresh documents, the same optimizer) until a round
    # ends with its copy loss below `llm_copy_warmup_until`, at most `llm_copy_warmup_rounds` rounds: when the drop
    # comes differs between families (Llama and Qwen2 by step ~400, Gemma at ~900-1350; ANALYSIS.md section 9)
    llm_copy_warmup_until: float = 0.0
    llm_copy_warmup_rounds: int = 1
    # length-grouped batches (less padding); with them no LLM learnt to copy from its context (ANALYSIS.md section 8)
    llm_by_length: bool = True

    @classmethod
    def general(cls) -> BaseConfig:
        """The general world's bases (issue 13; miniworld/configs/general.yaml says why)."""
        return experiments.section("general", "bases", cls=cls)

    @classmethod
    def fast(cls) -> BaseConfig:
        """`python -m miniworld bases --fast`: a quick check that pretraining starts and its losses fall (on the
        small world of `WorldConfig.fast()`), not bases to build on: the shipped ones are those."""
        return experiments.section("fast", "bases", cls=cls)


def _training_args(out: Path, steps: int, batch: int, lr: float, seed: int, by_length: bool = True,
                   schedule: str = "cosine") -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(out / "trainer"), max_steps=steps, per_device_train_batch_size=batch, learning_rate=lr,
        warmup_steps=0.05, lr_scheduler_type=schedule, weight_decay=0.01, adam_beta2=0.98, max_grad_norm=1.0,
        logging_steps=max(1, steps // 20), save_strategy="no", report_to=[], use_cpu=True, seed=seed, disable_tqdm=True,
        dataloader_num_workers=0, remove_unused_columns=False, train_sampling_strategy="group_by_length" if by_length else "random",
        length_column_name="length",
    )


class _ReportProgress(TrainerCallback):
    """Posts this base's progress to the job runner's single progress bar (jobs.py)."""

    def __init__(self, name: str):
        self.name = name

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % max(1, state.max_steps // 100) == 0:
            report_progress(self.name, state.global_step / state.max_steps)


def _fit(name: str, model, args: TrainingArguments, data, collator, callbacks: list | None, optimizers=None):
    """`Trainer.train()` with its log lines kept in `state.log_history` (not printed: one display, jobs.py's);
    returns its result, the logged losses and the optimizer (to go on with it)."""
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator,
                      callbacks=[_ReportProgress(name), *(callbacks or [])], optimizers=optimizers or (None, None))
    trainer.remove_callback(PrinterCallback)
    result = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return result, losses, getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # unwrapped from accelerate


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


# ----------------------------------------------------------------------------------------------------------
# NMT
# ----------------------------------------------------------------------------------------------------------
def encode_pairs(tok: NllbTokenizer, rows: list[dict], max_len: int) -> list[dict]:
    """NLLB layout without switching `src_lang` per row: source `[src_code, x..., </s>]`, labels
    `[tgt_code, y..., </s>]` (the model shifts labels right behind `</s>` to get decoder inputs)."""
    src = tok([r["src_text"] for r in rows], add_special_tokens=False)["input_ids"]
    tgt = tok([r["tgt_text"] for r in rows], add_special_tokens=False)["input_ids"]
    out = []
    for r, s, t in zip(rows, src, tgt):
        ids = [tok.convert_tokens_to_ids(r["src_lang"])] + s[: max_len - 2] + [tok.eos_token_id]
        labels = [tok.convert_tokens_to_ids(r["tgt_lang"])] + t[: max_len - 2] + [tok.eos_token_id]
        out.append(dict(input_ids=ids, attention_mask=[1] * len(ids), labels=labels, length=len(ids) + len(labels)))
    return out


def keeps_pair(row: dict, levels: dict[str, float]) -> bool:
    """Whether a translation pair survives its language's data level. Decided by a hash of the language and the
    English side (not a random draw): both directions of a pair go together, and every run keeps the same pairs."""
    english_first = row["src_lang"] == ENGLISH
    lang, english = (row["tgt_lang"], row["src_text"]) if english_first else (row["src_lang"], row["tgt_text"])
    return zlib.crc32(f"{lang}:{english}".encode()) % 10_000 < levels.get(lang, 1.0) * 10_000


def train_nmt(world_dir: str | Path, out: str | Path, cfg: BaseConfig, callbacks: list | None = None,
              general: bool = False, levels: dict[str, float] | None = None, name: str = "nmt") -> Path:
    """Train the NLLB-architecture translation model on `nmt_pretrain.jsonl` (`general`: and the stories and
    summaries of `general/nmt.jsonl`; `levels`: only that share of a language's pairs, `keeps_pair`); saves
    model + tokenizer. `name`: its job's, for the progress display."""
    world_dir, out = Path(world_dir), Path(out)
    if trained_with(out, cfg, "nmt_"):
        return out
    torch.manual_seed(cfg.seed)
    rows = read_jsonl(world_dir / "nmt_pretrain.jsonl")
    if general:
        rows += read_jsonl(world_dir / "general" / "nmt.jsonl")
    if levels:
        rows = [r for r in rows if keeps_pair(r, levels)]
    world = json.loads((world_dir / "world.json").read_text())
    codes = world["languages"]
    lang_codes = [ENGLISH, *codes]
    texts = {r["src_text"] for r in rows} | {r["tgt_text"] for r in rows}
    tok = train_nllb_tokenizer(sorted(texts), lang_codes, vocab_size=cfg.nmt_vocab, isolate_punctuation=True)
    tok.model_max_length = cfg.max_len
    config = M2M100Config(
        vocab_size=len(tok), d_model=cfg.nmt_d_model, encoder_layers=cfg.nmt_layers, decoder_layers=cfg.nmt_layers,
        encoder_attention_heads=cfg.nmt_heads, decoder_attention_heads=cfg.nmt_heads, encoder_ffn_dim=cfg.nmt_ffn,
        decoder_ffn_dim=cfg.nmt_ffn, max_position_embeddings=cfg.max_len + 2, dropout=0.0, attention_dropout=0.0,
        # embeddings are scaled by sqrt(d_model): with init_std = d_model**-0.5 a token embedding has unit scale
        # like the sinusoidal positions (the default 0.02 drowns tokens in positions and learning stalls)
        init_std=cfg.nmt_d_model ** -0.5,
        activation_dropout=0.0, encoder_layerdrop=0.0, decoder_layerdrop=0.0, scale_embedding=True,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id, tie_word_embeddings=True,
    )
    model = M2M100ForConditionalGeneration(config)
    low = world["low_resource"]
    rows += [r for r in rows if low in (r["src_lang"], r["tgt_lang"])] * (cfg.nmt_low_resource_upsample - 1)
    data = _ListDataset(encode_pairs(tok, rows, cfg.max_len))
    args = _training_args(out, cfg.nmt_steps, cfg.nmt_batch, cfg.nmt_lr, cfg.seed)
    collator = DataCollatorForSeq2Seq(tok, model=model, pad_to_multiple_of=8, label_pad_token_id=-100)
    t0 = time.time()
    result, losses, _ = _fit(name, model, args, data, collator, callbacks)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, max_new_tokens=cfg.max_len, num_beams=1,
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    mark_done(out, dict(seconds=time.time() - t0, train_loss=result.training_loss, losses=losses,
                        params=model.num_parameters(), vocab=len(tok), pairs=len(data), config=asdict(cfg)))
    return out


@torch.no_grad()
def translate(model, tok, texts: list[str], src_lang: str, tgt_lang: str, batch_size: int = 64,
              max_new_tokens: int = 120) -> list[str]:
    """Greedy NLLB translation, the standard way (src_lang on the tokenizer, forced target-code BOS)."""
    model.eval()
    tok.src_lang = src_lang
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True)
        gen = model.generate(**enc, forced_bos_token_id=tok.convert_tokens_to_ids(tgt_lang), max_new_tokens=max_new_tokens,
                             num_beams=1, do_sample=False)
        out += tok.batch_decode(gen, skip_special_tokens=True)
    return out


# ----------------------------------------------------------------------------------------------------------
# LLM
# ----------------------------------------------------------------------------------------------------------
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}### Instruction: {{ m['content'] }} "
    "### Response: Let's think step by step.{% elif m['role'] == 'assistant' %} {{ m['content'] }}{{ eos_token }}"
    "{% endif %}{% endfor %}"
)


def train_llm_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """English Metaspace BPE; characters never seen in English become one fused `<unk>` per run, as an
    English-only LLM would see a foreign script. A `<s>` BOS is added like Llama tokenizers do."""
    bpe = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    # punctuation as its own token: "7." must be the number token "▁7" plus ".", not a second token for 7
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True),
        pre_tokenizers.Split(Regex(r"[.,?!:;'\"]"), behavior="isolated"),
    ])
    bpe.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False))
    bos = bpe.token_to_id("<s>")
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", padding_side="left", model_max_length=512)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def encode_llm(tok: PreTrainedTokenizerFast, rows: list[dict], max_len: int) -> list[dict]:
    """`<s> prompt completion </s>`; loss on the completion (and EOS) only."""
    prompts = tok([r["prompt"] for r in rows])["input_ids"]  # with <s>
    comps = tok([r["completion"] for r in rows], add_special_tokens=False)["input_ids"]
    out = []
    for p, c in zip(prompts, comps):
        ids = (p + c + [tok.eos_token_id])[:max_len]
        labels = ([-100] * len(p) + c + [tok.eos_token_id])[:max_len]
        out.append(dict(input_ids=ids, attention_mask=[1] * len(ids), labels=labels, length=len(ids)))
    return out


def train_llm(world_dir: str | Path, out: str | Path, cfg: BaseConfig, callbacks: list | None = None) -> Path:
    """Train the Llama-architecture English LLM on `llm_pretrain.jsonl`; saves model + tokenizer."""
    world_dir, out = Path(world_dir), Path(out)
    if trained_with(out, cfg, "llm_"):
        return out
    torch.manual_seed(cfg.seed)
    rows = read_jsonl(world_dir / "llm_pretrain.jsonl")
    tok = train_llm_tokenizer([r["prompt"] + r["completion"] for r in rows], cfg.llm_vocab)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=cfg.llm_d_model, intermediate_size=cfg.llm_ffn, num_hidden_layers=cfg.llm_layers,
        num_attention_heads=cfg.llm_heads, num_key_value_heads=cfg.llm_heads, max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, rope_theta=10000.0,
    )
    model = LlamaForCausalLM(config)
    data = _ListDataset(encode_llm(tok, rows, cfg.max_len))
    tok.padding_side = "right"  # training pads on the right; generation uses left padding (saved below)
    collator = DataCollatorForSeq2Seq(tok, pad_to_multiple_of=8, label_pad_token_id=-100)
    return _fit_and_save_llm("llm", model, tok, data, collator, out, cfg, callbacks, max_new_tokens=64)


def _fit_and_save_llm(name: str, model, tok, data, collator, out: Path, cfg: BaseConfig, callbacks: list | None,
                      max_new_tokens: int, **info) -> Path:
    """Train an LLM, then save it like any Hub LLM (left padding and greedy decoding for generation) and mark it done
    with its losses and settings."""
    args = _training_args(out, cfg.llm_steps, cfg.llm_batch, cfg.llm_lr, cfg.seed, by_length=cfg.llm_by_length)
    t0 = time.time()
    result, losses, _ = _fit(name, model, args, data, collator, callbacks)
    tok.padding_side = "left"
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id, do_sample=False,
                                               max_new_tokens=max_new_tokens)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    mark_done(out, dict(seconds=time.time() - t0, train_loss=result.training_loss, losses=losses, **info,
                        params=model.num_parameters(), vocab=len(tok), examples=len(data), config=asdict(cfg)))
    return out


@torch.no_grad()
def llm_generate(model, tok, prompts: list[str], batch_size: int = 64, max_new_tokens: int = 64,
                 add_special_tokens: bool = True) -> list[str]:
    """Greedy completion of full prompts (left padded; BOS added by the tokenizer unless the prompt has it)."""
    model.eval()
    tok.padding_side = "left"
    out = []
    for i in range(0, len(prompts), batch_size):
        enc = tok(prompts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=add_special_tokens)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        out += tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def english_prompt(question: str) -> str:
    return LLM_PROMPT.format(question=question)


# ----------------------------------------------------------------------------------------------------------
# General LLMs (issue 13): three architecture families on the same English data
# ----------------------------------------------------------------------------------------------------------
GENERAL_CHAT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}{% for m in messages %}{% if m['role'] == 'user' %}### Instruction: "
    "{{ m['content'] }} ### Response:{% elif m['role'] == 'assistant' %} {{ m['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
# family (= its transformers model_type) -> what sets it apart. Each gets the same width and data; the differences
# are the architectures' own (and the tokenizer their checkpoints load with).
LLM_FAMILIES = {
    "llama": "RMSNorm, SwiGLU, RoPE; Metaspace BPE with <unk> for foreign scripts (as Llama 2)",
    "qwen2": "q/k/v biases; byte-level BPE, one token per digit (transformers loads any qwen2 checkpoint's tokenizer "
             "as Qwen2Tokenizer, so it is trained as one)",
    "gemma": "input embeddings scaled by sqrt(hidden) inside the model, (1 + w) RMSNorm, GeGLU",
}


def general_llm_tokenizer(family: str, texts: list[str], vocab_size: int):
    if family == "qwen2":
        # byte-level: a foreign script is a run of byte tokens, as for the real Qwen2.5 (no <unk>)
        tok = Qwen2Tokenizer().train_new_from_iterator(texts, vocab_size=vocab_size)
    else:
        tok = train_llm_tokenizer(texts, vocab_size)
    tok.padding_side = "left"
    tok.chat_template = GENERAL_CHAT_TEMPLATE
    return tok


def general_llm_config(family: str, tok, cfg: BaseConfig):
    if family not in LLM_FAMILIES:
        raise ValueError(f"unknown LLM family {family!r}; known: {sorted(LLM_FAMILIES)}")
    heads = cfg.llm_heads
    return AutoConfig.for_model(
        family, vocab_size=len(tok), hidden_size=cfg.llm_d_model, intermediate_size=cfg.llm_ffn,
        num_hidden_layers=cfg.llm_layers, num_attention_heads=heads, num_key_value_heads=heads,
        head_dim=cfg.llm_d_model // heads, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        rope_theta=10000.0)


def copy_documents(texts: list[str], n: int, seed: int) -> list[dict]:
    """`n` copy documents (`encode_general`: p, a newline, p again), p = 5-20 words drawn uniformly from the words of
    `texts`. Only copying from the context predicts the second p, and no word statistics do: a fresh LLM of the
    general size learns it (an induction circuit) within a few hundred steps in random order, not within 1500 in
    length-grouped batches (ANALYSIS.md section 8)."""
    words = sorted({w for t in texts for w in t.split()})
    rng = random.Random(f"{seed}:copy-documents")
    passages = (" ".join(rng.choice(words) for _ in range(rng.randint(5, 20))) for _ in range(n))
    return [dict(copy=p) for p in passages]


def encode_general(tok, rows: list[dict], max_len: int) -> list[dict]:
    """Plain text rows: loss on every token. Instruction rows: the chat prompt, then ` output</s>` with the loss on
    the output only (as instruction tuning does). Copy rows (`copy_documents`): the passage, a newline, the same
    tokens again, with the loss on the second copy only (the first is random words: a loss there is pure noise)."""
    from processing_xbridge import chat_prompt  # noqa: PLC0415  (the prompt the harness will ask it with)

    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    out = []
    for r in rows:
        if "text" in r:
            ids = (bos + tok(r["text"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id])[:max_len]
            labels = [-100 if i == tok.bos_token_id else i for i in ids]
        else:
            if "copy" in r:
                passage = tok(r["copy"], add_special_tokens=False)["input_ids"]
                prompt, answer = bos + passage + newline, passage
            else:
                prompt = tok(chat_prompt(tok, r["input"], r["instruction"]), add_special_tokens=False)["input_ids"]
                answer = tok(" " + r["output"], add_special_tokens=False)["input_ids"]
            ids = (prompt + answer + [tok.eos_token_id])[:max_len]
            labels = ([-100] * len(prompt) + answer + [tok.eos_token_id])[:max_len]
        out.append(dict(input_ids=ids, attention_mask=[1] * len(ids), labels=labels, length=len(ids)))
    return out


def train_general_llm(family: str, world_dir: str | Path, out: str | Path, cfg: BaseConfig,
                      callbacks: list | None = None) -> Path:
    """A general English LLM of `family` on `general/llm.jsonl`: stories as plain text, math and summaries as
    instructions; saves model + tokenizer like any Hub LLM."""
    world_dir, out = Path(world_dir), Path(out)
    if trained_with(out, cfg, "llm_"):
        return out
    torch.manual_seed(cfg.seed)
    rows = read_jsonl(world_dir / "general" / "llm.jsonl")
    texts = [r["text"] if "text" in r else f"{r['instruction']}\n{r['input']} {r['output']}" for r in rows]
    tok = general_llm_tokenizer(family, texts + ["### Instruction: ### Response:"], cfg.llm_vocab)
    model = AutoModelForCausalLM.from_config(general_llm_config(family, tok, cfg))
    tok.padding_side = "right"
    collator = DataCollatorForSeq2Seq(tok, pad_to_multiple_of=8, label_pad_token_id=-100)
    n_round, n_kept = cfg.llm_copy_warmup_steps * 2 * cfg.llm_batch, round(cfg.llm_copy_fraction * len(rows))
    # the kept documents follow the first round's, so that a run which stops after one round saw what it did before
    # the rounds existed (the shipped Llama and Qwen2 stay bit for bit the same)
    copies = copy_documents(texts, n_kept + cfg.llm_copy_warmup_rounds * n_round, cfg.seed)
    kept, rounds = copies[n_round:n_round + n_kept], [copies[:n_round]] + [
        copies[n_kept + i * n_round:n_kept + (i + 1) * n_round] for i in range(1, cfg.llm_copy_warmup_rounds)]
    warmup_losses, optimizer = [], None
    for i, documents in enumerate(rounds if n_round else []):
        # random order (length-grouped batches never left the plateau), twice the batch at half the rate, constant:
        # the copy circuit appears in a sudden drop after a plateau, which a decaying rate can miss (ANALYSIS.md, 8)
        args = _training_args(out / "copy-warmup", cfg.llm_copy_warmup_steps, 2 * cfg.llm_batch, cfg.llm_lr / 2, cfg.seed,
                              by_length=False, schedule="constant_with_warmup")
        # rounds after the first go on with the first round's optimizer (its Adam moments) at the constant rate
        schedule = None if optimizer is None else (optimizer, get_constant_schedule(optimizer))
        _, losses, optimizer = _fit(f"llm-{family} copy warm-up {i + 1}", model, args,
                               _ListDataset(encode_general(tok, documents, cfg.max_len)), collator, callbacks, schedule)
        warmup_losses += losses
        if losses[-1] < cfg.llm_copy_warmup_until:
            break
    data = _ListDataset(encode_general(tok, rows + kept, cfg.max_len))
    return _fit_and_save_llm(f"llm-{family}", model, tok, data, collator, out, cfg, callbacks, max_new_tokens=96,
                             family=family, **({"copy_warmup_losses": warmup_losses} if warmup_losses else {}))


def pretrain(kind: str, world_dir: str | Path, out: str | Path, cfg: BaseConfig,
             levels: dict[str, float] | None = None) -> str:
    """One base (`"llm"`, `"nmt"`, `"nmt-general"`, `"nmt-sweep"` or a general LLM `"llm-<family>"`), as a job of
    jobs.run_jobs; returns its folder. `levels`: the sweep NMT's share of each language's pairs (`keeps_pair`)."""
    if kind == "llm":
        return str(train_llm(world_dir, out, cfg))
    if kind in ("nmt", "nmt-general", "nmt-sweep"):
        return str(train_nmt(world_dir, out, cfg, general=kind != "nmt",
                             levels=levels, name=kind))
    if kind.removeprefix("llm-") in LLM_FAMILIES:
        return str(train_general_llm(kind.removeprefix("llm-"), world_dir, out, cfg))
    raise ValueError(f"unknown base {kind!r}; known: {sorted(FIRST_BASES + GENERAL_BASES)}")


FIRST_BASES = ("llm", "nmt")  # the first world's: a reasoning-only English LLM and the NMT (the shipped ones)
GENERAL_BASES = ("nmt-general", *(f"llm-{family}" for family in LLM_FAMILIES))  # the general world's (issue 13)
