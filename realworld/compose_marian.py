"""Compose the bridge's NMT for a language x from two converted Marian SSRU students (`convert_marian` outputs):
the encoder of the x->en model (it reads x, in its source vocabulary) and the decoder + output layer of the
en->x model (it writes x, in its target vocabulary), plus the en->x model's encoder as the *memory encoder*: the
space the en->x decoder was trained to read (XBridge's OT term aligns the decoder memory to the English answer's
states in that space).

    python -m realworld.compose_marian --encoder DIR_xx_en --decoder DIR_en_xx --out DIR

The result is one checkpoint folder (remote code `marian_ssru/`, `share_encoder_decoder_embeddings=False`,
`memory_encoder=True`) with a `MarianTokenizer` whose source side is the x->en SentencePiece vocabulary and whose
target side is the en->x one (`tok(texts)` -> encoder ids, `tok(text_target=...)` -> decoder ids, `batch_decode`
decodes decoder ids). Load it with `AutoModelForSeq2SeqLM.from_pretrained(DIR, trust_remote_code=True)` and
`AutoTokenizer.from_pretrained(DIR, trust_remote_code=True)`. No weight changes: every tensor is copied.
"""

from __future__ import annotations

import argparse
import inspect
import json
import tempfile
from pathlib import Path

from hub_xbridge import card_text  # the project's one model-card writer

from .files import atomic_dir, report, sha256_file

# encoder fields that must agree between the two directions (the memory encoder is built from the same config)
ENCODER_FIELDS = ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "activation_function",
                  "layer_norm_eps", "scale_embedding", "max_position_embeddings")
CHECK_SOURCE = "O pássaro está à janela; é óbvio que ninguém o viu."  # a probe sentence (accents)
CHECK_ENGLISH = "Nobody saw the bird at the window."


class CompositionError(ValueError):
    pass


def _load(folder: Path, role: str):
    from .marian_ssru.modeling_marian_ssru import MarianSSRUForConditionalGeneration

    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise CompositionError(f"{folder}: not a converted checkpoint folder (config.json + model.safetensors "
                               f"expected; make the {role} with `python -m realworld.convert_marian`)")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "marian_ssru":
        raise CompositionError(f"{folder}: model_type={config.get('model_type')!r}, expected 'marian_ssru' ({role})")
    if config.get("share_encoder_decoder_embeddings", True) is False or config.get("memory_encoder"):
        raise CompositionError(f"{folder}: already a composed model; the {role} must be a one-direction student")
    if not (folder / "marian_vocab.spm").is_file():
        raise CompositionError(f"{folder}: marian_vocab.spm (the SentencePiece model) is missing ({role})")
    model = MarianSSRUForConditionalGeneration.from_pretrained(folder).eval()
    return model


def build_tokenizer(source_folder: Path, target_folder: Path, source_lang, target_lang, pad_id: int, scratch: Path):
    """transformers' `MarianTokenizer` with separate vocabularies: the ids of the two converted tokenizers."""
    from transformers import AutoTokenizer, MarianTokenizer

    files = {}
    for side, folder in (("vocab", source_folder), ("target_vocab_file", target_folder)):
        vocab = AutoTokenizer.from_pretrained(folder, trust_remote_code=True).get_vocab()
        want = {"</s>": 0, "<unk>": 1, "<pad>": pad_id}
        got = {t: vocab.get(t) for t in want}
        if got != want:
            raise CompositionError(f"{folder}: special token ids {got}, expected {want}")
        files[side] = scratch / f"{side}.json"
        files[side].write_text(json.dumps(dict(sorted(vocab.items(), key=lambda kv: kv[1])), ensure_ascii=False),
                               encoding="utf-8")
    return MarianTokenizer(source_spm=str(source_folder / "marian_vocab.spm"),
                           target_spm=str(target_folder / "marian_vocab.spm"), vocab=str(files["vocab"]),
                           target_vocab_file=str(files["target_vocab_file"]), separate_vocabs=True,
                           source_lang=source_lang, target_lang=target_lang, model_max_length=1024)


def compose_state_dict(enc, dec) -> dict:
    """Encoder side (source embeddings + encoder) from `enc`; decoder, lm_head (+ bias) from `dec`; `dec`'s encoder
    as `model.memory_encoder`."""
    sd = {}
    for k, v in enc.state_dict().items():
        if k == "model.shared.weight" or k.startswith("model.encoder."):
            sd[k] = v
    for k, v in dec.state_dict().items():
        if k.startswith(("model.decoder.", "lm_head.")):
            sd[k] = v
        elif k.startswith("model.encoder."):
            sd["model.memory_encoder." + k[len("model.encoder."):]] = v
    return sd


def check(net, enc, dec, tok) -> dict:
    """The composed model computes what its parts compute (exactly: the same weights): encoder states = `enc`'s,
    memory encoder = `dec`'s encoder, decoder logits on one memory = `dec`'s."""
    import torch

    src = tok([CHECK_SOURCE], return_tensors="pt")
    eng = tok(text_target=[CHECK_ENGLISH], return_tensors="pt")
    with torch.no_grad():
        diffs = {
            "encoder": (net.get_encoder()(**src).last_hidden_state - enc.get_encoder()(**src).last_hidden_state),
            "memory_encoder": (net.get_memory_encoder()(eng["input_ids"], eng["attention_mask"]).last_hidden_state
                               - dec.get_encoder()(eng["input_ids"], eng["attention_mask"]).last_hidden_state),
        }
        memory = enc.get_encoder()(**src).last_hidden_state
        labels = eng["input_ids"]
        diffs["decoder_logits"] = (net(encoder_outputs=(memory,), attention_mask=src["attention_mask"], labels=labels).logits
                                   - dec(encoder_outputs=(memory,), attention_mask=src["attention_mask"], labels=labels).logits)
    out = {k: float(v.abs().max()) for k, v in diffs.items()}
    if any(v != 0.0 for v in out.values()):
        raise CompositionError(f"the composed model differs from its parts: max |diff| {out}")
    return out


def model_card(name: str, config, enc_folder: Path, dec_folder: Path, files: dict, provenance: dict, checked: dict) -> str:
    src, tgt = config.source_lang or "?", config.target_lang or "?"
    prov = "\n".join(f"- {k}: {v}" for k, v in provenance.items()) or "- (composed from local folders)"
    digests = "\n".join(f"- `{n}`: sha256 `{h}`" for n, h in files.items())
    metadata = {"license": "mpl-2.0", "library_name": "transformers", "pipeline_tag": "translation",
                "language": [src, "en"], "tags": ["marian", "bergamot", "firefox-translations", "ssru", "xbridge"]}
    return card_text(name, metadata, [f"""The NMT side of an XBridge bridge for {src}, composed by `python -m realworld.compose_marian` (XBridge project)
from two Firefox Translations (Bergamot) "tiny" students converted by `python -m realworld.convert_marian`:

| part | taken from | vocabulary |
| --- | --- | --- |
| `model.shared`, `model.encoder` (reads {src}) | `{enc_folder.name}` ({src}->en): its encoder | source: its SentencePiece model (`source.spm`) |
| `model.decoder`, `lm_head` + output bias (writes {tgt}) | `{dec_folder.name}` (en->{tgt}): its decoder | target: its SentencePiece model (`target.spm`) |
| `model.memory_encoder` (`get_memory_encoder()`) | `{dec_folder.name}` (en->{tgt}): its encoder | target (shared with the decoder) |

No weight was changed (every tensor is copied; checked on a probe sentence: max |diff| {checked}).

**Not a translator by itself**: the encoder and decoder come from different models and were never trained together
(the pt->en encoder's states are not the space the en->pt decoder reads). `generate` works from any decoder memory
supplied from outside (`encoder_outputs`, `attention_mask`): in XBridge the memory is the LLM's English answer mapped
by the trained `dec_map`.

**The memory encoder** is the en->{tgt} model's encoder: the space the en->{tgt} decoder was trained to read.
XBridge's optimal-transport (OT) term aligns the decoder memory (the mapped LLM states) to the English answer's
states *in that space* (`XBridgeForConditionalGeneration.memory_encoder()` calls `get_memory_encoder()`), so the
decoder is fed something like what it read in training. `forward`/`generate` never run it.

- Architecture: encoder {config.encoder_layers} layers, d={config.d_model}, {config.encoder_attention_heads} heads,
  FFN {config.encoder_ffn_dim} (a stock transformers `MarianEncoder`, Marian's sinusoid table); decoder
  {config.decoder_layers} SSRU layers + cross-attention + FFN (remote code `modeling_marian_ssru.py`);
  `share_encoder_decoder_embeddings=False`: source embeddings {config.vocab_size} x {config.d_model}, target
  embeddings {config.decoder_vocab_size} x {config.d_model} tied to `lm_head`.
- Tokens (both vocabularies): `</s>` = 0 (appended to every source), `<unk>` = 1, `<pad>` = {config.pad_token_id}
  (an added zero row, also the decoder start; never generated). No language token.
- Tokenizer: transformers' `MarianTokenizer` with `separate_vocabs=True`: `tok(texts)` gives encoder (source) ids,
  `tok(text_target=texts)` decoder (target) ids, `tok.batch_decode(ids)` decodes target ids.
- Weights: dequantised intgemm8 values (see the two students' model cards); licence and provenance as theirs.

```python
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.modeling_outputs import BaseModelOutput
tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
nmt = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True)
states = nmt.get_encoder()(**tok(["Olá, mundo."], return_tensors="pt")).last_hidden_state     # reads {src}
english = tok(text_target=["Hello, world."], return_tensors="pt")
reference = nmt.get_memory_encoder()(**english).last_hidden_state                          # OT's space
ids = nmt.generate(encoder_outputs=BaseModelOutput(last_hidden_state=reference),
                   attention_mask=english["attention_mask"], max_new_tokens=32)                  # writes {tgt}
print(tok.batch_decode(ids, skip_special_tokens=True))
```

## Provenance

{prov}

Files read:
{digests}

## Licence

Model weights: MPL-2.0, as the two Firefox Translations students it is composed from (see their model cards).
The composer and remote code are part of XBridge (Apache-2.0).
"""])


def compose(encoder: str | Path, decoder: str | Path, out: str | Path, name: str | None = None,
            provenance: dict | None = None, force: bool = False) -> Path:
    """Write the composed checkpoint into `out` (in a tmp folder beside it, then renamed)."""
    from transformers import GenerationConfig

    from .marian_ssru.configuration_marian_ssru import MarianSSRUConfig
    from .marian_ssru.modeling_marian_ssru import MarianSSRUForConditionalGeneration

    encoder, decoder, out = Path(encoder), Path(decoder), Path(out)
    if out.exists() and not force:
        raise CompositionError(f"{out} exists; pass --force to replace it")
    enc, dec = _load(encoder, "encoder (the x->en model)"), _load(decoder, "decoder (the en->x model)")
    bad = {f: (getattr(enc.config, f), getattr(dec.config, f)) for f in ENCODER_FIELDS
           if getattr(enc.config, f) != getattr(dec.config, f)}
    if bad:
        raise CompositionError(f"{encoder} and {decoder} differ in {bad} (encoder, decoder): the memory encoder and "
                               "the source encoder must have one shape")
    for f in ("pad_token_id", "eos_token_id"):
        if getattr(enc.config, f) != getattr(dec.config, f):
            raise CompositionError(f"{encoder} has {f}={getattr(enc.config, f)}, {decoder} {getattr(dec.config, f)}: a "
                                   "composed model has one id for it (the converter's <pad> is the vocabulary size: "
                                   "the two vocabularies must be the same size)")
    if enc.config.target_lang and dec.config.source_lang and enc.config.target_lang != dec.config.source_lang:
        raise CompositionError(f"{encoder} translates into {enc.config.target_lang!r} but {decoder} reads "
                               f"{dec.config.source_lang!r}: they do not meet in one pivot language")
    params = inspect.signature(MarianSSRUConfig.__init__).parameters
    fields = {k: v for k, v in dec.config.to_dict().items() if k in params and k not in ("self", "kwargs")}
    config = MarianSSRUConfig(**{**fields, "vocab_size": enc.config.vocab_size,
                                 "decoder_vocab_size": dec.config.decoder_vocab_size,
                                 "share_encoder_decoder_embeddings": False, "memory_encoder": True,
                                 "source_lang": enc.config.source_lang, "target_lang": dec.config.target_lang})
    net = MarianSSRUForConditionalGeneration(config).eval()
    net.load_state_dict(compose_state_dict(enc, dec), strict=True)
    net.tie_weights()
    with tempfile.TemporaryDirectory() as scratch:
        tok = build_tokenizer(encoder, decoder, config.source_lang, config.target_lang, config.pad_token_id,
                              Path(scratch))
        checked = check(net, enc, dec, tok)
        files = {f"{folder.name}/{f}": sha256_file(folder / f) for folder in (encoder, decoder)
                 for f in ("model.safetensors", "marian_vocab.spm")}
        parts = {}
        for folder in (encoder, decoder):
            record = folder / "provenance.json"
            parts[folder.name] = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
        provenance = {**(provenance or {}), "encoder": encoder.name, "decoder and memory encoder": decoder.name}
        name = name or out.name
        with atomic_dir(out) as tmp:
            type(net.config).register_for_auto_class()
            type(net).register_for_auto_class("AutoModelForSeq2SeqLM")
            net.generation_config = GenerationConfig(**{k: v for k, v in dec.generation_config.to_diff_dict().items()
                                                        if k != "transformers_version"})
            net.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / "README.md").write_text(model_card(name, config, encoder, decoder, files, provenance, checked),
                                           encoding="utf-8")
            (tmp / "provenance.json").write_text(json.dumps({**provenance, "files": files, "check": checked,
                                                             "parts": parts}, indent=2) + "\n", encoding="utf-8")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m realworld.compose_marian", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", required=True, help="converted x->en checkpoint folder (its encoder reads x)")
    p.add_argument("--decoder", required=True, help="converted en->x checkpoint folder (its decoder writes x)")
    p.add_argument("--out", required=True, help="output checkpoint folder")
    p.add_argument("--name", help="model name for the card (default: the output folder's name)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    a = p.parse_args(argv)
    return report(lambda: compose(a.encoder, a.decoder, a.out, name=a.name, force=a.force), CompositionError)


if __name__ == "__main__":
    raise SystemExit(main())
