"""Convert a GGUF causal LLM into a safetensors checkpoint (weights, tokenizer, chat template, model card).

    python -m realworld.convert_gguf GGUF --out DIR [--dtype float32|bfloat16] [--license TEXT] [--name NAME]

transformers does the reading (`from_pretrained(..., gguf_file=..., quantization_config=GgufConfig(dequantize=True))`,
needs `pip install gguf`): it dequantises the 4-bit blocks to dense float tensors, which takes tens of seconds at
every load; `save_pretrained` of that dense model, once, makes later loads take about a second. The dequantised
weights *are* the quantised model's values (what a user of the GGUF runs), not the original fp16/bf16 release.

The conversion checks itself: the saved checkpoint is loaded back and its logits on a chat prompt must equal the
GGUF-loaded model's (max |diff| <= 1e-5); the greedy answer to that prompt and both load times are written to
`provenance.json` and the model card.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from hub_xbridge import card_text  # the project's one model-card writer

from .files import atomic_dir, report, sha256_file

DTYPES = ("float32", "bfloat16")
CHECK_PROMPT = "What is the capital of France? Answer in one sentence."
LOGITS_TOLERANCE = 1e-5


class ConversionError(ValueError):
    pass


def gguf_metadata(path: Path) -> dict:
    """A few general.* fields of the GGUF header (name, architecture, file type, licence), via the gguf package."""
    try:
        from gguf import GGUFReader
    except ImportError as err:
        raise ConversionError("reading GGUF needs the `gguf` package: pip install 'gguf>=0.10'") from err
    try:
        reader = GGUFReader(str(path))
    except Exception as err:  # the reader raises assorted errors on foreign or truncated files
        raise ConversionError(f"{path}: not a readable GGUF file ({type(err).__name__}: {err})") from err
    out = {}
    for key in ("general.name", "general.architecture", "general.file_type", "general.license",
                "general.basename", "general.size_label", "general.quantization_version"):
        field = reader.fields.get(key)
        if field is not None:
            value = field.contents()
            out[key] = value.tolist() if hasattr(value, "tolist") else value
    return out


def check_file(gguf: Path) -> None:
    if not gguf.is_file():
        raise ConversionError(f"{gguf}: no such GGUF file")
    with open(gguf, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ConversionError(f"{gguf}: not a GGUF file (first bytes {magic!r}, expected b'GGUF')")


def load_gguf(path: Path, dtype: str = "float32"):
    """(model, tokenizer, seconds): transformers' GGUF loader, dequantised to a dense model that can be saved."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=getattr(torch, dtype),
                                                 quantization_config=GgufConfig(dequantize=True))
    seconds = time.perf_counter() - start
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        if getattr(quantizer, "packed_modules", None):
            raise ConversionError(f"{path}: transformers kept {len(quantizer.packed_modules)} weights in GGUF blocks "
                                  "despite dequantize=True; cannot save a dense checkpoint")
        # the model is dense now; the GGUF quantizer only blocks save_pretrained (it calls itself unserialisable)
        quantizer.remove_quantization_config(model)
    return model.eval(), tok, seconds


def chat_ids(tok, prompt: str = CHECK_PROMPT):
    messages = [{"role": "user", "content": prompt}]
    if tok.chat_template:
        return tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return tok(prompt, return_tensors="pt")


def probe(model, tok) -> tuple:
    """(logits on the chat prompt, greedy answer of up to 32 tokens)."""
    import torch

    batch = chat_ids(tok)
    with torch.inference_mode():
        logits = model(**batch).logits
        ids = model.generate(**batch, max_new_tokens=32, do_sample=False)
    return logits, tok.decode(ids[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def model_card(name: str, model, meta: dict, provenance: dict, licence: str, dtype: str, gguf_name: str,
               gguf_sha: str, check: dict) -> str:
    n_params = sum(p.numel() for p in model.parameters())
    prov = "\n".join(f"- {k}: {v}" for k, v in provenance.items())
    metadata = {"library_name": "transformers", "pipeline_tag": "text-generation", "tags": ["gguf-dequantised"]}
    return card_text(name, metadata, [f"""`{type(model).__name__}` ({n_params / 1e6:.1f}M parameters, {model.config.num_hidden_layers} layers,
d={model.config.hidden_size}, vocab {model.config.vocab_size}), converted from the GGUF file `{gguf_name}`
(sha256 `{gguf_sha}`, GGUF general.name {meta.get('general.name')!r}, file type {meta.get('general.file_type')}) by
`python -m realworld.convert_gguf` (XBridge project): transformers' `gguf_file=` loader, dequantised, then
`save_pretrained` in {dtype}.

The GGUF weights are 4-bit block-quantised; they were dequantised to float. These values are the quantised
model (what a user of the GGUF runs), not the original fp16/bf16 release: results with this checkpoint are
results of the quantised model.

Checked at conversion: logits of this checkpoint on a chat prompt equal the GGUF-loaded model's (max |diff|
{check['max_abs_logit_diff']:.2e}); load time {check['gguf_load_seconds']} s from the GGUF,
{check['converted_load_seconds']} s from this folder. Greedy answer to "{CHECK_PROMPT}":
"{check['answer']}"

## Provenance

{prov}

## Licence

{licence}
"""])


def convert(gguf: str | Path, out: str | Path, dtype: str = "float32", name: str | None = None,
            licence: str = "see the upstream model's licence", provenance: dict | None = None,
            extra_files: dict | None = None, force: bool = False, log=print) -> Path:
    """Convert one GGUF file into `out` (written in a tmp folder beside it, checked, then renamed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if dtype not in DTYPES:
        raise ConversionError(f"dtype={dtype!r}; valid: {', '.join(DTYPES)}")
    gguf, out = Path(gguf), Path(out)
    check_file(gguf)
    if out.exists() and not force:
        raise ConversionError(f"{out} exists; pass --force to replace it")
    meta = gguf_metadata(gguf)
    model, tok, gguf_seconds = load_gguf(gguf, dtype)
    if not tok.chat_template:
        log(f"warning: {gguf.name} carries no chat template")
    ref_logits, ref_answer = probe(model, tok)
    gguf_sha = sha256_file(gguf)
    provenance = {**(provenance or {}), "gguf file": gguf.name, "gguf sha256": gguf_sha,
                  "gguf metadata": json.dumps(meta, default=str)}
    if model.generation_config is None or model.generation_config.eos_token_id is None:
        model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                                                   pad_token_id=tok.pad_token_id)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        del model
        start = time.perf_counter()
        tok2 = AutoTokenizer.from_pretrained(tmp)
        model2 = AutoModelForCausalLM.from_pretrained(tmp, dtype=getattr(torch, dtype)).eval()
        converted_seconds = time.perf_counter() - start
        logits, answer = probe(model2, tok2)
        diff = float((logits.float() - ref_logits.float()).abs().max())
        if logits.shape != ref_logits.shape or not diff <= LOGITS_TOLERANCE:
            raise ConversionError(f"{gguf}: the saved checkpoint's logits differ from the GGUF model's "
                                  f"(max |diff| {diff:.3g} > {LOGITS_TOLERANCE}, shapes {tuple(logits.shape)} vs "
                                  f"{tuple(ref_logits.shape)})")
        if answer != ref_answer:
            raise ConversionError(f"{gguf}: greedy answers differ: GGUF {ref_answer!r}, saved {answer!r}")
        check = {"prompt": CHECK_PROMPT, "answer": answer, "max_abs_logit_diff": diff,
                 "gguf_load_seconds": round(gguf_seconds, 1), "converted_load_seconds": round(converted_seconds, 1),
                 "threads": torch.get_num_threads()}
        for dst, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / dst)
        (tmp / "README.md").write_text(model_card(name or out.name, model2, meta, provenance, licence, dtype,
                                                  gguf.name, gguf_sha, check), encoding="utf-8")
        (tmp / "provenance.json").write_text(json.dumps({**provenance, "licence": licence, "dtype": dtype,
                                                         "check": check}, indent=2) + "\n", encoding="utf-8")
    log(f"{out.name}: logits max |diff| {diff:.1e}; load {gguf_seconds:.1f} s (GGUF) -> {converted_seconds:.1f} s; "
        f"answer: {answer!r}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m realworld.convert_gguf", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gguf", help="the .gguf file")
    p.add_argument("--out", required=True, help="output checkpoint folder")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--name", help="model name for the card (default: the output folder's name)")
    p.add_argument("--license", default="see the upstream model's licence", help="licence text for the model card")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    a = p.parse_args(argv)
    return report(lambda: convert(a.gguf, a.out, dtype=a.dtype, name=a.name, licence=a.license, force=a.force),
                  ConversionError)


if __name__ == "__main__":
    raise SystemExit(main())
