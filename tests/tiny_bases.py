"""Tiny offline base models (NLLB-architecture NMT, Qwen2 / Llama LLM) and an offline Hugging Face cache.

No weights can be downloaded here, so tests build real checkpoints of the stock architectures from tiny configs:
an NLLB-style tokenizer trained on the vendored FLORES text, and the vendored real Qwen tokenizer for the LLM.
Every downstream code path (from_pretrained, Hub ids, the cache) is the one real checkpoints take.
"""

import os
import shutil
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, M2M100Config, M2M100ForConditionalGeneration, Qwen2Config, Qwen2ForCausalLM

from miniworld.nllb_tokenizer import train_nllb_tokenizer

ROOT = Path(__file__).resolve().parents[1]
FLORES = ROOT / "data" / "flores200_devtest"
QWEN_TOKENIZER = ROOT / "data" / "qwen2.5_tokenizer"
LANGS = ["eng_Latn", "swh_Latn", "deu_Latn", "fra_Latn", "spa_Latn", "rus_Cyrl", "ben_Beng", "tha_Thai", "zho_Hans", "jpn_Jpan", "tel_Telu"]


def build_tiny_nmt(path: Path, lines_per_lang: int = 150) -> Path:
    texts = []
    for lang in LANGS:
        texts += (FLORES / f"{lang}.devtest").read_text(encoding="utf-8").splitlines()[:lines_per_lang]
    tokenizer = train_nllb_tokenizer(texts, LANGS, vocab_size=3000)
    config = M2M100Config(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=256,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, dropout=0.1,
        scale_embedding=True, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = M2M100ForConditionalGeneration(config)
    model.generation_config.decoder_start_token_id = 2
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _train_spm(texts: list[str], vocab_size: int, folder: Path, name: str) -> int:
    """A SentencePiece model `<name>.spm` and its Marian vocabulary `<name>.json` ({piece: id}); Marian's special
    ids (`</s>` 0, `<unk>` 1) and `<pad>` 2 in both sides, so one pad id serves the encoder and the decoder."""
    import io
    import json

    import sentencepiece as spm

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=proto, vocab_size=vocab_size,
                                   model_type="unigram", character_coverage=1.0, eos_id=0, unk_id=1, pad_id=2,
                                   bos_id=-1, num_threads=1, minloglevel=2)
    (folder / f"{name}.spm").write_bytes(proto.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    vocab["<pad>"] = 2
    (folder / f"{name}.json").write_text(json.dumps(vocab, ensure_ascii=False))
    return len(vocab)


def build_tiny_bilingual_nmt(path: Path, source: str = "spa_Latn", lines: int = 300) -> Path:
    """A bilingual Marian model (stock `MarianMTModel`) whose source and target vocabularies differ: the source
    side knows `source` only, the target side English and `source` (as a decoder that writes `source` from an
    English-reading encoder's space would). No language tokens: the languages are implied."""
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    src = (FLORES / f"{source}.devtest").read_text(encoding="utf-8").splitlines()[:lines]
    eng = (FLORES / "eng_Latn.devtest").read_text(encoding="utf-8").splitlines()[:lines]
    n_src, n_tgt = _train_spm(src, 500, path, "source"), _train_spm(eng + src, 700, path, "target")
    tokenizer = MarianTokenizer(str(path / "source.spm"), str(path / "target.spm"), str(path / "source.json"),
                                target_vocab_file=str(path / "target.json"), separate_vocabs=True)
    config = MarianConfig(
        vocab_size=n_src, decoder_vocab_size=n_tgt, share_encoder_decoder_embeddings=False, d_model=32,
        encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=256, pad_token_id=2, eos_token_id=0, decoder_start_token_id=2,
        tie_word_embeddings=False, init_std=0.2,
    )
    torch.manual_seed(2)
    model = MarianMTModel(config)
    with torch.no_grad():  # a bias the decoder's logits must carry (Marian adds it outside its LM head)
        model.final_logits_bias.normal_(0, 1.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


FAMILY_LANGS = ["eng_Latn", "deu_Latn", "fra_Latn", "swh_Latn"]
NMT_SHAPE = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                 encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=256, dropout=0.1,
                 tie_word_embeddings=False, init_std=0.2)


def _family_texts(lines: int = 120) -> list[str]:
    return [line for lang in FAMILY_LANGS for line in (FLORES / f"{lang}.devtest").read_text(encoding="utf-8").splitlines()[:lines]]


def _unigram_pieces(texts: list[str], specials: list[str], vocab_size: int = 800) -> list[tuple[str, float]]:
    """(piece, score) of a Unigram model trained with `tokenizers`, the `specials` first: what the stock
    SentencePiece-backed tokenizers of transformers 5 (mBART-50, T5) take as `vocab=`."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    unigram.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                               unk_token="<unk>", show_progress=False))
    return [(piece, float(score)) for piece, score in json.loads(unigram.to_str())["model"]["vocab"]]


def build_tiny_family_nmt(path: Path, family: str) -> Path:
    """A tiny random NMT of one family with its stock tokenizer class, trained offline on FLORES text:
    `m2m100` (M2M100Tokenizer: `__pt__` tags), `mbart50` (MBart50Tokenizer: `pt_XX`), `madlad` (T5 with MADLAD-400's
    `<2pt>` pieces), `marian` (one joint vocabulary with Tatoeba-style `>>por<<` target tags)."""
    import json

    from transformers import (M2M100Tokenizer, MarianConfig, MarianMTModel, MarianTokenizer, MBart50Tokenizer,
                              MBartConfig, MBartForConditionalGeneration, T5Config, T5ForConditionalGeneration,
                              T5Tokenizer)

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    texts = _family_texts()
    torch.manual_seed(3)
    if family == "m2m100":
        _train_spm(texts, 800, path, "sentencepiece")
        pieces = json.loads((path / "sentencepiece.json").read_text())
        vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        for piece in sorted(pieces, key=pieces.get):
            vocab.setdefault(piece, len(vocab))
        (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (path / "sentencepiece.bpe.model").write_bytes((path / "sentencepiece.spm").read_bytes())
        for leftover in ("sentencepiece.spm", "sentencepiece.json"):
            (path / leftover).unlink()
        tokenizer = M2M100Tokenizer(str(path / "vocab.json"), str(path / "sentencepiece.bpe.model"))
        # its `__xx__` tags follow the vocabulary (neither len(tokenizer) nor get_vocab() counts them)
        model = M2M100ForConditionalGeneration(M2M100Config(vocab_size=max(tokenizer.lang_token_to_id.values()) + 1, pad_token_id=1, bos_token_id=0,
                                                            eos_token_id=2, decoder_start_token_id=2, scale_embedding=True,
                                                            **NMT_SHAPE))
    elif family == "mbart50":
        tokenizer = MBart50Tokenizer(vocab=_unigram_pieces(texts, ["<unk>", "<s>", "</s>"]))
        model = MBartForConditionalGeneration(MBartConfig(vocab_size=len(tokenizer), pad_token_id=1, bos_token_id=0,
                                                          eos_token_id=2, decoder_start_token_id=2, **NMT_SHAPE))
    elif family == "madlad":
        tags = [f"<2{code}>" for code in ("en", "de", "fr", "sw", "pt")]
        pieces = _unigram_pieces(texts, ["<pad>", "</s>", "<unk>", *tags])
        tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0)
        model = T5ForConditionalGeneration(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                                    num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                                                    tie_word_embeddings=False, initializer_factor=2.0))
    elif family == "marian":
        _train_spm(texts, 800, path, "source")
        vocab = json.loads((path / "source.json").read_text())
        for tag in (">>eng<<", ">>deu<<", ">>fra<<", ">>swh<<", ">>por<<"):
            vocab.setdefault(tag, len(vocab))
        (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (path / "target.spm").write_bytes((path / "source.spm").read_bytes())
        (path / "source.json").unlink()
        tokenizer = MarianTokenizer(str(path / "source.spm"), str(path / "target.spm"), str(path / "vocab.json"))
        model = MarianMTModel(MarianConfig(vocab_size=len(vocab), decoder_vocab_size=len(vocab), pad_token_id=2,
                                           eos_token_id=0, decoder_start_token_id=2, **NMT_SHAPE))
    else:
        raise ValueError(f"unknown family {family!r}")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# arch: (config class, model class, what the family needs beyond the shared shape)
OTHER_LLMS = {
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(head_dim=8)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(head_dim=8)),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", dict(head_dim=8, query_pre_attn_scalar=8)),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(head_dim=8, query_pre_attn_scalar=8, sliding_window=16)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {}),
    "cohere": ("CohereConfig", "CohereForCausalLM", dict(logit_scale=0.5)),
}


def build_tiny_llm(path: Path, arch: str = "qwen2") -> Path:
    tokenizer = AutoTokenizer.from_pretrained(QWEN_TOKENIZER)
    shape = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=151643, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, initializer_range=0.2,
    )
    # Untied embeddings and a large init: tiny random models with tied weights repeat one token whatever the
    # input, which would make every output comparison in the tests vacuous.
    if arch == "gpt2":  # learned positions, layers under `h`, final norm `ln_f`: no `model.layers` to look up
        from transformers import GPT2Config, GPT2LMHeadModel

        config, cls = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=3, n_head=4, n_positions=512,
                                 bos_token_id=151643, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                 tie_word_embeddings=False, initializer_range=0.2), GPT2LMHeadModel
    elif arch in OTHER_LLMS:  # the other causal-LM families the bridge composes (tests/test_llm_families.py)
        import transformers

        config_name, model_name, extra = OTHER_LLMS[arch]
        config = getattr(transformers, config_name)(**shape, **extra)
        cls = getattr(transformers, model_name)
    else:
        config, cls = (Qwen2Config(**shape), Qwen2ForCausalLM) if arch == "qwen2" else (LlamaConfig(**shape), LlamaForCausalLM)
    torch.manual_seed(1)
    model = cls(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_bases(root: Path) -> dict:
    root = Path(root)
    paths = {"nmt": root / "tiny-nllb", "llm": root / "tiny-qwen2", "llama": root / "tiny-llama", "gpt2": root / "tiny-gpt2"}
    if not (paths["nmt"] / "config.json").exists():
        build_tiny_nmt(paths["nmt"])
    if not (paths["llm"] / "config.json").exists():
        build_tiny_llm(paths["llm"], "qwen2")
    if not (paths["llama"] / "config.json").exists():
        build_tiny_llm(paths["llama"], "llama")
    if not (paths["gpt2"] / "config.json").exists():
        build_tiny_llm(paths["gpt2"], "gpt2")
    return {k: str(v) for k, v in paths.items()}


def make_offline_hub_cache(hf_home: Path, repo_id: str, folder: Path, revision: str = "main", subfolder: str = "") -> None:
    """Lay `folder` out as `repo_id` (or its `subfolder`) in a Hugging Face cache under `hf_home`, as a download would."""
    commit = "0" * 40
    repo = Path(hf_home) / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit / subfolder
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in Path(folder).iterdir():
        if file.is_file():
            shutil.copy(file, snapshot / file.name)
    # A real download also records the files the loaders probed and the Hub did not have (`.no_exist`);
    # offline, a probe with no record fails. AutoTokenizer probes a `config.json` next to every tokenizer.
    for probed in ("config.json",):
        if not (snapshot / probed).exists():
            marker = repo / ".no_exist" / commit / subfolder / probed
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)


def quick_train_args(out, steps: int) -> list[str]:
    """`python -m train` flags of the tests' few-step CPU runs: fp32, batch 2, lr 3e-3, a loss every 4 steps."""
    return ["--output_dir", str(out), "--max_steps", str(steps), "--per_device_train_batch_size", "2",
            "--learning_rate", "3e-3", "--warmup_steps", "0", "--bf16", "false", "--base_dtype", "float32",
            "--logging_steps", "4", "--save_strategy", "no", "--use_cpu", "true", "--disable_tqdm", "true",
            "--report_to", "none", "--seed", "0"]


def seeded_bridge(model, seed: int = 0, scale: float = 3.0):
    """Random but deterministic bridge weights, large enough that different inputs give different outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(("enc_map", "dec_map", "boundary")):
                param.copy_(torch.randn(param.shape, generator=generator) * scale / max(param.shape[-1], 1) ** 0.5)
    return model


if __name__ == "__main__":  # python tests/tiny_bases.py OUT: build the tiny bases once, e.g. for the Space
    import sys

    print(build_tiny_bases(Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("TMPDIR", "/tmp") + "/xbridge-tiny")))
