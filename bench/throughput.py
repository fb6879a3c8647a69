"""Throughput on real data (issue 15), each comparison timed side by side (round-robin) in one run:

- training tokens/s on realistic length mixes: before (random batches, the LLM input as wide as the sum of each
  part's longest row) / all-padding columns squeezed / squeezed + length-grouped batches;
- prefill of ragged generation batches, before / after the squeeze (mini-world and 600M+0.5B shapes);
- NLLB translation sentences/s: `generate()` vs CTranslate2 float32 / int8 (a trained mini-world NMT with its own
  output lengths; the NLLB-200-distilled-600M shape with random weights and forced lengths), the int8 chrF delta;
- `build-data` sentences/s on the mini-world's stage-1 records, transformers vs CTranslate2;
- Translate-Test with the fast engine against XBridge at the 600M+0.5B shape (forced lengths, as in generation.py).

"Before" of the squeeze is the same model with the LLM input padded back (on the left, mask 0) to the width the
previous `_llm_inputs` gave: bos + source + boundary + prompt + answer widths, each part as the collator padded it,
and with the answer's all-padding columns kept (the LM head and the decoder memory cover them, as they did then).
That is the old LLM compute.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import common
from .common import timeit_many
from .report import md_table

# ---------------------------------------------------------------- length mixes (tokens)
# Lognormal lengths clipped to the ranges seen in the data sets named (medians from their published statistics,
# rounded): FLORES-200 sentences (stage 1: x, its English, y) and GSM8K / MGSM-style task records (stage 2: a
# question, the prompt holding it, a step-by-step English answer of 40-400 tokens).
MIXES = {
    "flores (stage 1)": dict(stage=1, source=(32, 0.45, 8, 120), answer=(28, 0.45, 6, 110), target=(32, 0.45, 8, 120)),
    "gsm8k/mgsm (stage 2)": dict(stage=2, source=(60, 0.45, 20, 200), prompt_extra=30, answer=(120, 0.6, 40, 400)),
}


def _draw(rng, median, sigma, low, high):
    return int(min(high, max(low, round(median * math.exp(rng.gauss(0, sigma))))))


# Generation batches (no answer): the prompt holds a template and the question in LLM tokens. One language per
# batch (the LLM/NLLB token ratio is the same for every row: the two parts' longest rows mostly coincide), and
# a batch mixing languages whose LLM tokenisation is 1-3x longer than NLLB's (e.g. Latin vs Thai script).
PREFILL_MIXES = {
    "one language": dict(source=(32, 0.6, 6, 120), prompt_extra=12, llm_per_nmt_token=(1.2,), answer=(1, 0, 1, 1)),
    "mixed languages": dict(source=(32, 0.6, 6, 120), prompt_extra=12, llm_per_nmt_token=(1.0, 1.3, 2.0, 3.0),
                            answer=(1, 0, 1, 1)),
}


def make_records(mix: dict, n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = {"source": _draw(rng, *mix["source"]), "answer": _draw(rng, *mix["answer"])}
        if "target" in mix:
            r["target"] = _draw(rng, *mix["target"])
        if "prompt_extra" in mix:  # template + the raw question (source_in_prompt) in LLM tokens
            ratio = rng.choice(mix.get("llm_per_nmt_token", (1.0,)))
            r["prompt"] = mix["prompt_extra"] + round(r["source"] * ratio)
        out.append(r)
    return out


def _round8(n):
    return (n + 7) // 8 * 8


def collate(model, records: list[dict], seed: int) -> dict:
    """Random ids with the records' lengths, padded as the stage collator pads (each part to its longest row,
    rounded up to a multiple of 8; the prompt on the left)."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    nmt_pad, llm_pad = cfg.nmt_config.pad_token_id, 0
    high_nmt = min(cfg.lang_code_to_id.values())
    high_llm = min(cfg.llm_config.vocab_size, 151643)
    B = len(records)

    def part(key, left=False, nmt=True, wrap=False):
        lengths = [r[key] for r in records]
        width = _round8(max(lengths))
        ids = torch.full((B, width), nmt_pad if nmt else llm_pad, dtype=torch.long)
        mask = torch.zeros(B, width, dtype=torch.long)
        for i, n in enumerate(lengths):
            row = torch.randint(4, high_nmt, (n,), generator=g) if nmt else torch.randint(0, high_llm, (n,), generator=g)
            if wrap:  # [lang_code, x..., </s>]
                row[0], row[-1] = cfg.lang_id(common.LANGS[0]), cfg.nmt_config.eos_token_id
            sl = slice(width - n, width) if left else slice(0, n)
            ids[i, sl], mask[i, sl] = row, 1
        return ids, mask

    batch = {}
    batch["input_ids"], batch["attention_mask"] = part("source", wrap=True)
    if "prompt" in records[0]:
        batch["prompt_ids"], batch["prompt_attention_mask"] = part("prompt", left=True, nmt=False)
    batch["answer_ids"], batch["answer_attention_mask"] = part("answer", nmt=False)
    if "target" in records[0]:
        labels, mask = part("target", wrap=True)
        batch["labels"] = labels.masked_fill(mask == 0, -100)
        batch["ot_target_ids"], batch["ot_target_attention_mask"] = part("answer", wrap=True)  # English, NLLB ids
    return batch


def real_tokens(batch) -> int:
    keys = ("attention_mask", "prompt_attention_mask", "answer_attention_mask")
    n = sum(int(batch[k].sum()) for k in keys if k in batch)
    return n + int((batch["labels"] != -100).sum()) if "labels" in batch else n


class WideInputs:
    """`model._llm_inputs` padded back on the left to the previous width (see the module docstring)."""

    def __init__(self, model):
        self.model, self.inner = model, type(model)._llm_inputs

    def __call__(self, input_ids, attention_mask, prompt_ids, prompt_mask, answer_ids, answer_mask):
        embeds, mask, targets, is_source = self.inner(self.model, input_ids, attention_mask, prompt_ids, prompt_mask,
                                                      answer_ids, answer_mask)
        bos = self.model.config.llm_config.bos_token_id is not None
        width = int(bos) + input_ids.shape[1] + 1 + (prompt_ids.shape[1] if prompt_ids is not None else 0) + (
            answer_ids.shape[1] if answer_ids is not None else 0)
        extra = width - mask.shape[1]
        return (F.pad(embeds, (0, 0, extra, 0)), F.pad(mask, (extra, 0)), F.pad(targets, (extra, 0), value=-100),
                F.pad(is_source, (extra, 0)))


class squeeze_off:
    """Context: the model builds its LLM input the previous way (as wide as the sum of the parts, the answer's
    all-padding columns not dropped)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.model._llm_inputs = WideInputs(self.model)
        self.model._used_answer_columns = lambda answer_ids, answer_mask: (answer_ids, answer_mask)

    def __exit__(self, *exc):
        del self.model._llm_inputs, self.model._used_answer_columns


def llm_width(model, batch) -> int:
    with torch.no_grad():
        return model._llm_inputs(batch["input_ids"], batch["attention_mask"], batch.get("prompt_ids"),
                                 batch.get("prompt_attention_mask"), batch.get("answer_ids"),
                                 batch.get("answer_attention_mask"))[1].shape[1]


# ---------------------------------------------------------------- models at the mini-world shapes
def mini_config():
    """The mini-world's bases (miniworld/bases.py BaseConfig defaults), random weights."""
    from configuration_xbridge import XBridgeConfig

    nmt = dict(model_type="m2m_100", vocab_size=3000, d_model=128, encoder_layers=3, decoder_layers=3,
               encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=512, decoder_ffn_dim=512,
               max_position_embeddings=1026, scale_embedding=True, dropout=0.0, pad_token_id=1, bos_token_id=0,
               eos_token_id=2, decoder_start_token_id=2, tie_word_embeddings=True)
    llm = dict(model_type="llama", vocab_size=700, hidden_size=192, intermediate_size=768, num_hidden_layers=2,
               num_attention_heads=6, num_key_value_heads=6, max_position_embeddings=2048, bos_token_id=1,
               eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    codes = {lang: 3000 - 3 - i for i, lang in enumerate([common.ENGLISH, *common.LANGS])}
    return XBridgeConfig(nmt_config=nmt, llm_config=llm, lang_code_to_id=codes, nmt_name_or_path="random/mini-nmt",
                         llm_name_or_path="random/mini-llm")


def build(shape: str, dtype=torch.float32):
    from modeling_xbridge import XBridgeForConditionalGeneration

    torch.manual_seed(0)
    model = XBridgeForConditionalGeneration(mini_config() if shape == "mini-world" else common.real_config())
    model.to(dtype)
    for cfg in (model.config.nmt_config, model.config.llm_config):
        cfg.use_cache = True
    return model.eval()


# ---------------------------------------------------------------- training tokens/s
def train_case(model, mix_name: str, n_records: int, B: int, repeats: int, log) -> dict:
    from train.ot import build_ot_loss
    from train.trainer import LengthGroupedBatchSampler

    mix = MIXES[mix_name]
    records = make_records(mix, n_records, seed=0)
    lengths = [r["source"] + r["answer"] for r in records]
    random_order = torch.randperm(n_records, generator=torch.Generator().manual_seed(0)).tolist()
    # One mega-batch per epoch here: a real run's is 50 optimizer batches (thousands of records), far more than B.
    grouped = list(LengthGroupedBatchSampler(lengths, B, B, seed=0, mega_batch_mult=n_records // B))
    orders = {"random": random_order, "grouped": grouped}
    batches = {k: [collate(model, [records[i] for i in order[s:s + B]], seed=s)
                   for s in range(0, n_records, B)] for k, order in orders.items()}
    model.set_stage(mix["stage"])
    model.config.lambda_llm, model.config.lambda_dec, model.config.lambda_ot = (1.0, 1.0, 6.0) if mix["stage"] == 1 else (1.0, 0.0, 0.0)
    model.set_ot_loss(build_ot_loss("relaxed") if mix["stage"] == 1 else None)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-6)

    def epoch(kind, squeeze):
        def run():
            for batch in batches[kind]:
                optimizer.zero_grad(set_to_none=True)
                if squeeze:
                    out = model(**batch)
                else:
                    with squeeze_off(model):
                        out = model(**batch)
                out.loss.backward()
                optimizer.step()
        return run

    variants = {"before (random batches, wide LLM input)": ("random", False),
                "squeeze only (item 1)": ("random", True),
                "squeeze + length-grouped (items 1+2)": ("grouped", True)}
    timing = timeit_many({k: epoch(*v) for k, v in variants.items()}, repeats)
    tokens = sum(real_tokens(b) for b in batches["random"])
    assert tokens == sum(real_tokens(b) for b in batches["grouped"])
    widths = {}
    model.eval()
    for name, (kind, squeeze) in variants.items():
        if squeeze:
            w = [llm_width(model, b) * b["input_ids"].shape[0] for b in batches[kind]]
        else:
            with squeeze_off(model):
                w = [llm_width(model, b) * b["input_ids"].shape[0] for b in batches[kind]]
        widths[name] = sum(w)
    llm_real = sum(int(b["attention_mask"].sum() + b["answer_attention_mask"].sum()) + 2 * b["input_ids"].shape[0]
                   + int(b.get("prompt_attention_mask", torch.zeros(1)).sum()) for b in batches["random"])
    model.set_stage(None)
    model.set_ot_loss(None)
    rows = {}
    base = timing["before (random batches, wide LLM input)"]["median_s"]
    for name in variants:
        t = timing[name]["median_s"]
        rows[name] = {"epoch_cpu_s": t, "epoch_wall_s": timing[name]["wall_median_s"], "tokens_per_s": tokens / t,
                      "speedup": base / t, "llm_positions": widths[name],
                      "llm_padding_share": 1 - llm_real / widths[name], "cpu_runs_s": timing[name]["cpu_runs_s"]}
        log(f"  train {mix_name}: {name}: {tokens / t:.0f} tok/s ({base / t:.2f}x), LLM padding "
            f"{rows[name]['llm_padding_share']:.0%}")
    return {"records": n_records, "batch": B, "stage": mix["stage"], "real_tokens": tokens, "mix": mix,
            "variants": rows}


# ---------------------------------------------------------------- prefill
def prefill_case(model, shape: str, B: int, mix: dict, repeats: int, log) -> dict:
    records = make_records(mix, B, seed=1)
    batch = collate(model, records, seed=1)
    batch.pop("answer_ids"), batch.pop("answer_attention_mask")
    with torch.no_grad():
        narrow = model._llm_inputs(batch["input_ids"], batch["attention_mask"], batch.get("prompt_ids"),
                                   batch.get("prompt_attention_mask"), None, None)
        with squeeze_off(model):
            wide = model._llm_inputs(batch["input_ids"], batch["attention_mask"], batch.get("prompt_ids"),
                                     batch.get("prompt_attention_mask"), None, None)

    def prefill(inputs):
        embeds, mask = inputs[0], inputs[1]
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)

        @torch.no_grad()
        def run():
            return model.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=True,
                             logits_to_keep=1)
        return run

    a, b = prefill(wide)(), prefill(narrow)()
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-4, atol=1e-4)  # same next-token logits
    timing = timeit_many({"before": prefill(wide), "after": prefill(narrow)}, repeats)
    row = {"batch": B, "width_before": wide[1].shape[1], "width_after": narrow[1].shape[1],
           "real_tokens": int(narrow[1].sum()), "before_s": timing["before"]["median_s"],
           "after_s": timing["after"]["median_s"], "speedup": timing["before"]["median_s"] / timing["after"]["median_s"]}
    log(f"  prefill {shape}: width {row['width_before']} -> {row['width_after']}, "
        f"{row['before_s']:.3f}s -> {row['after_s']:.3f}s ({row['speedup']:.2f}x)")
    return row


# ---------------------------------------------------------------- NLLB engines
class _FakeNLLBTokenizer:
    """Vocabulary names for a random-weights NLLB checkpoint (the converter reads only the token list)."""

    bos_token, pad_token, eos_token, unk_token = "<s>", "<pad>", "</s>", "<unk>"
    unk_token_id = 3
    special_tokens_map: dict = {}

    def __init__(self, vocab_size: int, codes: dict):
        names = ["<s>", "<pad>", "</s>", "<unk>"] + [f"t{i}" for i in range(4, vocab_size)]
        for code, i in codes.items():
            names[i] = code
        self.names = names

    def get_vocab(self):
        return {t: i for i, t in enumerate(self.names)}

    def convert_ids_to_tokens(self, ids):
        return self.names[ids] if isinstance(ids, int) else [self.names[i] for i in ids]


def save_random_nllb(model, folder: Path) -> Path:
    """The bridge's NLLB saved as a plain checkpoint, converted to CTranslate2 with a stand-in vocabulary."""
    import ctranslate2

    model.nmt.save_pretrained(folder)
    fake = _FakeNLLBTokenizer(model.config.nmt_config.vocab_size, model.config.lang_code_to_id)

    class Converter(ctranslate2.converters.TransformersConverter):
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return fake

    Converter(str(folder)).convert(str(folder) + "-ct2", quantization="float32", force=True)
    return Path(str(folder) + "-ct2")


def forced_engines(model, ct2_folder: Path, threads: int):
    """Translate id batches with forced output lengths on generate() and CTranslate2 (float32, int8)."""
    import ctranslate2

    names = _FakeNLLBTokenizer(model.config.nmt_config.vocab_size, model.config.lang_code_to_id).names
    translators = {ct: ctranslate2.Translator(str(ct2_folder), device="cpu", compute_type=ct, intra_threads=threads)
                   for ct in ("float32", "int8")}

    def hf(ids, lang, n):
        @torch.no_grad()
        def run():
            out = model.nmt.generate(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=1, do_sample=False,
                                     forced_bos_token_id=model.config.lang_id(lang), min_new_tokens=n, max_new_tokens=n)
            assert out.shape[1] == n + 1
            return out
        return run

    def ct(ids, lang, n, kind):
        tokens = [[names[i] for i in row] for row in ids.tolist()]

        def run():
            res = translators[kind].translate_batch(tokens, target_prefix=[[lang]] * len(tokens), beam_size=1,
                                                    max_decoding_length=n, min_decoding_length=n)
            got = len(res[0].hypotheses[0])
            assert got in (n, n + 1), (got, n)  # the code + the forced tokens (counting may include the prefix)
            return res
        return run

    return hf, ct


def ct2_forced_case(model, shape: str, ct2_folder: Path, B: int, src_len: int, out_len: int, repeats: int,
                    threads: int, log) -> dict:
    hf, ct = forced_engines(model, ct2_folder, threads)
    g = torch.Generator().manual_seed(3)
    ids = common.nmt_sentence(model, B, src_len, common.ENGLISH, g)
    fns = {"generate()": hf(ids, common.LANGS[0], out_len), "ctranslate2 float32": ct(ids, common.LANGS[0], out_len, "float32"),
           "ctranslate2 int8": ct(ids, common.LANGS[0], out_len, "int8")}
    timing = timeit_many(fns, repeats)
    base = timing["generate()"]["median_s"]
    rows = {k: {"cpu_s": v["median_s"], "sentences_per_s": B / v["median_s"], "speedup": base / v["median_s"]}
            for k, v in timing.items()}
    log(f"  NLLB {shape} B={B} src {src_len} out {out_len}: " + ", ".join(
        f"{k} {r['sentences_per_s']:.1f} sent/s ({r['speedup']:.1f}x)" for k, r in rows.items()))
    return {"batch": B, "src_len": src_len, "out_len": out_len, "engines": rows}


def miniworld_nmt(workdir: Path, log) -> tuple[str, dict]:
    """A mini-world and its NMT, trained briefly (the mini-world's NMT shape at 64 wide; ~2 min on one core)."""
    from miniworld.bases import BaseConfig, train_nmt
    from miniworld.world import WorldConfig, generate

    world = workdir / "world"
    generate(world, WorldConfig(n_llm_problems=200, n_nmt_items=300, n_stage1=200, n_task=30, n_test_problems=30,
                                n_test_sentences=100))
    t = time.time()
    nmt = train_nmt(world, workdir / "nmt", BaseConfig(nmt_steps=800, nmt_d_model=64, nmt_layers=2, nmt_ffn=256,
                                                       nmt_batch=32, nmt_vocab=1000))
    log(f"  mini-world NMT trained in {time.time() - t:.0f} s")
    flores = world / "test" / "flores"
    text = {p.stem: p.read_text(encoding="utf-8").splitlines() for p in flores.glob("*.devtest")}
    return str(nmt), {"world": str(world), "text": text}


def miniworld_engine_case(nmt: str, text: dict, repeats: int, threads: int, log) -> dict:
    import sacrebleu

    from nmt_engine import load_nllb

    engines = {"generate()": load_nllb("transformers", nmt),
               "ctranslate2 float32": load_nllb("ctranslate2", nmt, compute_type="float32", threads=threads),
               "ctranslate2 int8": load_nllb("ctranslate2", nmt, compute_type="int8", threads=threads)}
    directions = [("qaa_Latn", common.ENGLISH), (common.ENGLISH, "qab_Cyrl")]
    out = {"directions": {}, "sentences": len(text[common.ENGLISH])}
    for src, tgt in directions:
        texts, refs = text[src], text[tgt]
        outputs = {k: e.translate(texts, src, tgt, max_new_tokens=128) for k, e in engines.items()}
        timing = timeit_many({k: (lambda e=e: e.translate(texts, src, tgt, max_new_tokens=128))
                              for k, e in engines.items()}, repeats)
        base = timing["generate()"]["median_s"]
        rows = {}
        for k in engines:
            rows[k] = {"cpu_s": timing[k]["median_s"], "sentences_per_s": len(texts) / timing[k]["median_s"],
                       "speedup": base / timing[k]["median_s"],
                       "same_as_generate": sum(a == b for a, b in zip(outputs[k], outputs["generate()"])),
                       "chrf": sacrebleu.corpus_chrf(outputs[k], [refs]).score}
        rows["ctranslate2 int8"]["chrf_delta_vs_float32"] = rows["ctranslate2 int8"]["chrf"] - rows["ctranslate2 float32"]["chrf"]
        out["directions"][f"{src}->{tgt}"] = rows
        log(f"  NLLB mini-world {src}->{tgt} ({len(texts)} sentences): " + ", ".join(
            f"{k} {r['sentences_per_s']:.0f} sent/s ({r['speedup']:.1f}x, same {r['same_as_generate']}, chrF {r['chrf']:.1f})"
            for k, r in rows.items()))
    return out


def build_data_case(nmt: str, world: str, workdir: Path, threads: int, log) -> dict:
    """`python -m train build-data trilingual` on the mini-world's stage-1 records (English -> the record's
    language, beam 4 as the default), one engine after the other (one run each). `--max_new_tokens 120` keeps
    generate() inside the model's position table, where CTranslate2 stops (else generate() alone would write
    longer, degenerate outputs and the comparison would not be like for like)."""
    from train.build_data import main as build_main

    rows = [json.loads(line) for line in (Path(world) / "stage1.jsonl").read_text(encoding="utf-8").splitlines()]
    pairs = workdir / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"src_text": r["src_text"], "en_text": r["en_text"],
                                         "src_lang": r["src_lang"]}, ensure_ascii=False) + "\n" for r in rows),
                     encoding="utf-8")
    langs = sorted({r["src_lang"] for r in rows})
    out = {"records": len(rows), "engines": {}}
    variants = {"transformers": [], "ctranslate2 float32": ["--engine", "ctranslate2", "--compute_type", "float32"],
                "ctranslate2 int8": ["--engine", "ctranslate2", "--compute_type", "int8"]}
    for name, extra in variants.items():
        folder = workdir / f"build-{name.replace(' ', '-')}"
        shutil.rmtree(folder, ignore_errors=True)
        c, w = time.process_time(), time.perf_counter()
        build_main(["trilingual", "--nmt_name_or_path", nmt, "--input", str(pairs), "--tgt_langs", ",".join(langs),
                    "--output_dir", str(folder), "--batch_size", "32", "--seed", "0", "--max_new_tokens", "120",
                    *extra])  # within the NMT's 130 positions: both engines may write the same lengths
        cpu, wall = time.process_time() - c, time.perf_counter() - w
        translated = sum(1 for line in (folder / "shard-00000.jsonl").read_text(encoding="utf-8").splitlines()
                         if json.loads(line)["tgt_lang"] != json.loads(line)["src_lang"])
        shard = (folder / "shard-00000.jsonl").read_text(encoding="utf-8")
        out["engines"][name] = {"cpu_s": cpu, "wall_s": wall, "sentences_per_s": translated / cpu,
                                "translated": translated, "output_chars": len(shard)}
    base = out["engines"]["transformers"]["cpu_s"]
    reference = (workdir / "build-transformers" / "shard-00000.jsonl").read_text(encoding="utf-8").splitlines()
    for name, row in out["engines"].items():
        row["speedup"] = base / row["cpu_s"]
        mine = (workdir / f"build-{name.replace(' ', '-')}" / "shard-00000.jsonl").read_text(encoding="utf-8").splitlines()
        row["records_equal_to_transformers"] = sum(a == b for a, b in zip(mine, reference))
    log("  build-data: " + ", ".join(f"{k} {r['sentences_per_s']:.1f} sent/s ({r['speedup']:.1f}x)"
                                     for k, r in out["engines"].items()))
    return out


def translate_test_case(model, ct2_folder: Path, batches, lengths: dict, repeats: int, threads: int, log) -> dict:
    """XBridge vs Translate-Test whose NLLB steps run on generate() or CTranslate2 (float32 / int8); forced
    lengths and random ids as in generation.py (the same compute as chaining real text)."""
    from .generation import _greedy, _llm_pad, make_batch, xbridge_call

    hf, ct = forced_engines(model, ct2_folder, threads)
    out = {}
    for B in batches:
        batch = make_batch(model, B, lengths["src"], lengths["prompt"])
        g = torch.Generator().manual_seed(5)
        answer = common.nmt_sentence(model, B, lengths["english"], common.ENGLISH, g)  # the English answer
        prompt = common.llm_tokens(model, B, lengths["src"] + lengths["prompt"], g)  # the translated question

        @torch.no_grad()
        def llm():
            return model.llm.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                      pad_token_id=_llm_pad(model), **_greedy(lengths["english"]))

        def cascade(step1, step3):
            def run():
                step1()
                llm()
                step3()
            return run

        n_in, n_out = lengths["src"], lengths["target"] + 2  # + code and </s>, as generation.py forces
        fns = {"xbridge": xbridge_call(model, batch, common.LANGS[0], lengths["english"], lengths["target"]),
               "translate-test (generate)": cascade(hf(batch["input_ids"], common.ENGLISH, n_in),
                                                    hf(answer, common.LANGS[0], n_out)),
               "translate-test (ctranslate2 float32)": cascade(ct(batch["input_ids"], common.ENGLISH, n_in, "float32"),
                                                               ct(answer, common.LANGS[0], n_out, "float32")),
               "translate-test (ctranslate2 int8)": cascade(ct(batch["input_ids"], common.ENGLISH, n_in, "int8"),
                                                            ct(answer, common.LANGS[0], n_out, "int8"))}
        timing = timeit_many(fns, repeats)
        x = timing["xbridge"]["median_s"]
        rows = {k: {"cpu_s": v["median_s"], "xbridge_over_this": x / v["median_s"]} for k, v in timing.items()}
        out[f"B={B}"] = rows
        log(f"  translate-test B={B}: XBridge {x:.2f}s; " + ", ".join(
            f"{k} {r['cpu_s']:.2f}s (XBridge/TT {r['xbridge_over_this']:.2f}x)" for k, r in rows.items() if k != "xbridge"))
    return {"lengths": lengths, "batches": out}


# ---------------------------------------------------------------- driver
PLANS = {
    "quick": dict(train=dict(records=16, batch=4), prefill=[("mini-world", 8)], real=False, nmt_train=False,
                  forced=[("mini-world", 4, 16, 8)], tt=None, repeats=1),
    "full": dict(train=dict(records=96, batch=8), prefill=[("mini-world", 16), ("600M+0.5B", 8)], real=True,
                 nmt_train=True, forced=[("mini-world", 16, 32, 32), ("600M+0.5B", 16, 32, 32)],
                 tt=dict(batches=(1, 16), lengths=dict(src=24, prompt=8, english=16, target=16)), repeats=3),
}


def run_throughput(mode: str, threads: int, log=print) -> dict:
    plan = PLANS[mode]
    res = {"mode": mode, "load_average_start": common.load_average(), "train": {}, "prefill": {}, "nmt_forced": {}}
    started = time.time()
    try:
        import ctranslate2

        res["ctranslate2"] = ctranslate2.__version__
    except ImportError:
        ctranslate2 = None
        res["ctranslate2"] = None
        log("  ctranslate2 is not installed (pip install \"xbridge[fast]\"): its cases are skipped")
    mini = build("mini-world")
    for mix in MIXES:
        res["train"][mix] = train_case(mini, mix, plan["train"]["records"], plan["train"]["batch"], plan["repeats"], log)
    real = None
    for shape, B in plan["prefill"]:
        model = mini if shape == "mini-world" else (real := real or build("600M+0.5B"))
        for name, mix in PREFILL_MIXES.items():
            key = f"{shape} B={B}, {name}"
            repeats = plan["repeats"] if shape == "mini-world" else min(plan["repeats"], 2)  # ~10 s a prefill
            res["prefill"][key] = prefill_case(model, key, B, mix, repeats, log)
            res["prefill"][key]["load_average"] = common.load_average()
    workdir = Path(tempfile.mkdtemp(prefix="xbridge-bench-throughput-"))
    try:
        if ctranslate2 is not None:
            for shape, B, src_len, out_len in plan["forced"]:
                model = mini if shape == "mini-world" else (real := real or build("600M+0.5B"))
                folder = save_random_nllb(model, workdir / f"nllb-{shape}")
                res["nmt_forced"][f"{shape} B={B}"] = ct2_forced_case(model, shape, folder, B, src_len, out_len,
                                                                      plan["repeats"], threads, log)
                res["nmt_forced"][f"{shape} B={B}"]["load_average"] = common.load_average()
            if plan["nmt_train"]:
                nmt, world = miniworld_nmt(workdir, log)
                res["nmt_miniworld"] = miniworld_engine_case(nmt, world["text"], plan["repeats"], threads, log)
                res["nmt_miniworld"]["load_average"] = common.load_average()
                res["build_data"] = build_data_case(nmt, world["world"], workdir, threads, log)
                res["build_data"]["load_average"] = common.load_average()
            if plan["tt"]:
                folder = workdir / "nllb-600M+0.5B-ct2"
                res["translate_test"] = translate_test_case(real, folder, plan["tt"]["batches"], plan["tt"]["lengths"],
                                                            max(2, plan["repeats"] - 1), threads, log)
                res["translate_test"]["load_average"] = common.load_average()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    res["load_average_end"] = common.load_average()
    res["wall_s"] = time.time() - started
    return res


# ---------------------------------------------------------------- report
def write_report(res: dict, out: Path, machine: dict, command: str) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    L = ["# Throughput on real data (issue 15)", "", f"Command: `{command}`", "",
         f"Machine: {machine.get('cpu')}, {machine.get('cores_visible')} cores visible (shared), torch threads "
         f"{machine.get('torch_threads')}, torch {machine.get('torch')}, CTranslate2 {res.get('ctranslate2')}.",
         f"Load average (1, 5, 15 min) at the start {res['load_average_start']}, at the end {res['load_average_end']}; "
         "per case in throughput.json. Times are median process CPU seconds; every comparison is timed "
         "round-robin inside one run, so the ratios, not the absolute figures, are what to read.", ""]
    L += ["## Training tokens/s on realistic length mixes (mini-world shapes, random weights, batch "
          f"{next(iter(res['train'].values()))['batch']})", ""]
    L += md_table(["mix", "variant", "epoch CPU s", "real tokens/s", "speed-up", "LLM positions", "LLM padding"],
                  ([mix, name, f"{r['epoch_cpu_s']:.3f}", f"{r['tokens_per_s']:.0f}", f"{r['speedup']:.2f}x",
                    r["llm_positions"], f"{r['llm_padding_share']:.0%}"]
                   for mix, case in res["train"].items() for name, r in case["variants"].items()))
    L += ["", "Lengths (tokens; lognormal median, sigma, clipped to [min, max]): " + "; ".join(
        f"{k}: " + ", ".join(f"{f}={v}" for f, v in m.items() if f != "stage") for k, m in MIXES.items()), ""]
    L += ["## Prefill of ragged generation batches (source 6-120 NLLB tokens, prompt 12 + the question in LLM "
          "tokens, at 1.2x the NLLB length in one language, 1-3x in a batch mixing languages)", ""]
    L += md_table(["shape", "LLM width before", "after", "real tokens", "before (s)", "after (s)", "speed-up"],
                  ([key, r["width_before"], r["width_after"], r["real_tokens"], f"{r['before_s']:.3f}",
                    f"{r['after_s']:.3f}", f"{r['speedup']:.2f}x"] for key, r in res["prefill"].items()))
    if res.get("nmt_forced"):
        L += ["", "## NLLB translation: generate() vs CTranslate2 (random weights, forced output length, greedy)", ""]
        L += md_table(["shape", "batch", "source / output tokens", "engine", "CPU s", "sentences/s", "speed-up"],
                      ([key.split(" B=")[0], case["batch"], f"{case['src_len']} / {case['out_len']}", name,
                        f"{r['cpu_s']:.3f}", f"{r['sentences_per_s']:.1f}", f"{r['speedup']:.1f}x"]
                       for key, case in res["nmt_forced"].items() for name, r in case["engines"].items()))
    if res.get("nmt_miniworld"):
        m = res["nmt_miniworld"]
        L += ["", f"## NLLB translation on a trained mini-world NMT ({m['sentences']} test sentences per direction, "
              "greedy, own output lengths)", ""]
        L += md_table(["direction", "engine", "CPU s", "sentences/s", "speed-up", "outputs equal to generate()", "chrF"],
                      ([d, name, f"{r['cpu_s']:.3f}", f"{r['sentences_per_s']:.0f}", f"{r['speedup']:.1f}x",
                        f"{r['same_as_generate']}/{m['sentences']}", f"{r['chrf']:.2f}" + (
                            f" (int8 - float32: {r['chrf_delta_vs_float32']:+.2f})" if "chrf_delta_vs_float32" in r else "")]
                       for d, rows in m["directions"].items() for name, r in rows.items()))
    if res.get("build_data"):
        b = res["build_data"]
        L += ["", f"## build-data trilingual on the mini-world's stage-1 records ({b['records']} records, beam 4, "
              "batch 32, max 120 new tokens; one run each)", ""]
        L += md_table(["engine", "CPU s", "wall s", "sentences/s (CPU)", "speed-up", "records equal to transformers'"],
                      ([name, f"{r['cpu_s']:.2f}", f"{r['wall_s']:.2f}", f"{r['sentences_per_s']:.1f}",
                        f"{r['speedup']:.1f}x", f"{r['records_equal_to_transformers']}/{b['records']}"]
                       for name, r in b["engines"].items()))
        if b.get("note"):
            L += ["", f"Note: {b['note']} (load average {b.get('load_average_start')} -> {b.get('load_average')})."]
    if res.get("translate_test"):
        t = res["translate_test"]
        lg = t["lengths"]
        L += ["", f"## XBridge vs Translate-Test with the fast engine (600M+0.5B shapes, random weights, float32; "
              f"source {lg['src']}, prompt {lg['prompt']}, {lg['english']} English + {lg['target']} target tokens forced)", ""]
        L += md_table(["batch", "system", "CPU s", "XBridge / system"],
                      ([B, name, f"{r['cpu_s']:.3f}", f"{r['xbridge_over_this']:.2f}x"]
                       for B, rows in t["batches"].items() for name, r in rows.items()))
    L += ["", f"Wall time of this part: {res['wall_s']:.0f} s.", ""]
    (out / "throughput.md").write_text("\n".join(L), encoding="utf-8")
    (out / "throughput.json").write_text(json.dumps(res, indent=1, default=str), encoding="utf-8")
    files = ["throughput.md", "throughput.json"]
    try:
        files += _plots(res, out)
    except ImportError:
        pass
    return files


def _plots(res: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("training tokens/s", {f"{mix}\n{n.split(' (')[0]}": r["tokens_per_s"] for mix, c in res["train"].items()
                                     for n, r in c["variants"].items()})]
    if res.get("nmt_forced"):
        panels.append(("NLLB sentences/s", {f"{k.split(' B=')[0]}\n{n}": r["sentences_per_s"]
                                            for k, c in res["nmt_forced"].items() for n, r in c["engines"].items()}))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (title, values) in zip(axes[0], panels):
        ax.bar(range(len(values)), list(values.values()), color=[f"C{i % 3}" for i in range(len(values))])
        ax.set_xticks(range(len(values)), list(values), rotation=35, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)
    return ["throughput.png"]
