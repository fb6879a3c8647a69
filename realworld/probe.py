"""Does the stage-1 bridge read its source? `python -m realworld probe`: a diagnosis of the real job's stage 1.

The committed stage-1 bridges write fluent English unrelated to the source. The measure here says whether the LLM
uses the mapped source at all: the teacher-forced cross-entropy of the held-out English answers given their own
source against the same answers given another row's source (the sources rotated by one within the batch). A bridge
that carries the sentence's content has a large gap (`source_gain` = ce_rotated - ce_true, nats per token); one that
only learned a soft prompt for English has none. Checkpoints along training give the curve, per variant of the recipe.

Held out: the last HELD_OUT Tatoeba pairs (short everyday sentences) and their records are kept out of the probe's
training file; FLORES is not looked at. The probe trains on Tatoeba only (records ~10 tokens, a step ~3x cheaper than
with NTREX's news sentences), so that a few hundred more steps fit the 2 cores.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from . import job
from .job import EN, PT

HELD_OUT = 64
RESULTS = job.RESULTS / "probe"


@dataclass(frozen=True)
class Variant:
    recipe: job.Stage1Recipe
    extra: tuple[str, ...] = ()  # more `python -m train stage1` flags
    save_every: int = 150


RANDOM = replace(job.RECIPE, steps=600, enc_map_init="random")
VARIANTS = {
    "lr1e-3": Variant(RANDOM),
    "lr3e-3": Variant(replace(RANDOM, lr=3e-3)),
    # the warm start (train/warm_start.py): a short look at each rate, to pick the real job's
    "warm-lr1e-3": Variant(replace(RANDOM, steps=150, enc_map_init="english_lstsq"), save_every=75),
    "warm-lr3e-3": Variant(replace(RANDOM, steps=150, lr=3e-3, enc_map_init="english_lstsq"), save_every=75),
}


def tatoeba_pairs() -> list[tuple[str, str]]:
    folder = job.DATA / "tatoeba_test_v2021-08-07" / "eng-por"
    return job._pairs(folder / "tatoeba-test-v2021-08-07.por", folder / "tatoeba-test-v2021-08-07.eng")


def write_probe_data(out: Path) -> Path:
    from miniworld.runs import is_done, mark_data_done, write_jsonl

    import random

    if is_done(out):
        return out
    pairs = tatoeba_pairs()[:-HELD_OUT]
    records = [dict(src_text=s, src_lang=lang, en_text=en, tgt_text=pt, tgt_lang=PT)
               for pt, en in pairs for s, lang in ((pt, PT), (en, EN))]
    random.Random(0).shuffle(records)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "stage1.jsonl", records)
    mark_data_done(out, {"records": len(records)})
    return out


def train_variant(data: str, out: str, name: str, _bases: dict) -> str:
    from miniworld.bridge import train

    v = VARIANTS[name]
    flags = job.stage1_flags(data, out, 0, {k: val for k, val in asdict(v.recipe).items() if k != "seeds"})
    flags[flags.index("--save_strategy") + 1] = "steps"
    flags += ["--save_steps", str(v.save_every), "--save_only_model", "true", *v.extra]
    return train(out, ["train", "stage1"], flags)


def source_gain(model, processor, pairs: list[tuple[str, str]], src_lang: str) -> dict:
    """ce_true, ce_rotated and their difference over `pairs` (source text, English), one batch."""
    import torch

    sources, english = [s for s, _ in pairs], [e for _, e in pairs]

    def ce(src):
        batch = processor(src, src_lang=src_lang, prompt=False, answers=english)
        keep = ("input_ids", "attention_mask", "answer_ids", "answer_attention_mask")
        return float(model(**{k: v for k, v in batch.items() if k in keep}).loss_llm)

    with torch.inference_mode():
        true, rotated = ce(sources), ce(sources[1:] + sources[:1])
    return {"ce_true": round(true, 4), "ce_rotated": round(rotated, 4), "source_gain": round(rotated - true, 4)}


def eval_variant(name: str, _bases: dict, trained: str) -> dict:
    """source_gain (pt->en and en->en) and greedy pt->en chrF++ on the held-out pairs, at every checkpoint."""
    import torch
    from safetensors.torch import load_file

    from eval.metrics import chrf_pp

    model, processor = job.load_bridge(trained)
    held = tatoeba_pairs()[-HELD_OUT:]
    points = sorted(Path(trained).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    rows = []
    # step 0 of a warm start: the fit alone (zero boundary, as training starts), recomputed on the same records
    for point in ([None] if VARIANTS[name].recipe.enc_map_init != "random" else []) + points:
        if point is None:
            from train.warm_start import warm_start_enc_map

            records = (Path(trained).parent / "data" / "stage1.jsonl").read_text(encoding="utf-8").splitlines()
            with torch.no_grad():
                model.boundary.zero_()
            warm_start_enc_map(model, processor, [json.loads(line)["en_text"] for line in records[:4000]])
        else:
            missing, unexpected = model.load_state_dict(load_file(point / "model.safetensors"), strict=False)
            if unexpected:
                raise RuntimeError(f"{point}: unexpected weights {unexpected[:3]}")
        hyp = job.bridge_translate(model, processor, [p for p, _ in held], PT, EN)
        rows.append({"step": int(point.name.split("-")[1]) if point else 0,
                     "por_Latn": source_gain(model, processor, held, PT),
                     "eng_Latn": source_gain(model, processor, [(e, e) for _, e in held], EN),
                     "chrf++_pt_en": round(chrf_pp(hyp, [e for _, e in held])[0], 2), "example": hyp[:3]})
    return {"variant": name, "recipe": asdict(VARIANTS[name].recipe), "extra": list(VARIANTS[name].extra), "points": rows}


def run(out: str | Path = job.ROOT / "runs" / "realworld-probe", workers: int | None = None) -> dict:
    from miniworld.jobs import Job, run_jobs

    out = Path(out)
    data = str(write_probe_data(out / "data"))
    ident = job.bases_record()
    jobs = []
    for name in VARIANTS:
        jobs.append(Job(f"train/{name}", train_variant, (data, str(out / name), name, ident), cost=VARIANTS[name].recipe.steps / 60))
        jobs.append(Job(f"eval/{name}", eval_variant, (name, ident), after=(f"train/{name}",), cost=3.0,
                        cache=str(RESULTS / f"{name}.json.gz")))
    done = run_jobs(jobs, workers=workers, desc="probe", kernels=job.KERNELS)
    results = {name: done[f"eval/{name}"] for name in VARIANTS}
    write_report(results)
    return results


def write_report(results: dict) -> None:
    lines = ["# Does the stage-1 bridge read its source? (`python -m realworld probe`, realworld/probe.py)", "",
             f"Seed 0, one run per variant (a diagnosis, not a comparison with intervals; Table 1 has the seeds), "
             f"trained on Tatoeba. Held-out: {HELD_OUT} Tatoeba pairs. source_gain = ce(English | another row's source) - ce(English | its own "
             "source), nats per token: 0 means the LLM ignores the source.", "",
             "| variant | step | source_gain pt | source_gain en | ce_true pt | chrF++ pt->en |", "| --- | --- | --- | --- | --- | --- |"]
    for name, res in results.items():
        seen = set()
        for p in res["points"]:
            if p["step"] in seen:  # a result kept before the final folder was left out repeats the last checkpoint
                continue
            seen.add(p["step"])
            lines.append(f"| {name} | {p['step']} | {p['por_Latn']['source_gain']:.3f} | {p['eng_Latn']['source_gain']:.3f} "
                         f"| {p['por_Latn']['ce_true']:.2f} | {p['chrf++_pt_en']:.1f} |")
    lines += ["", "Per variant, first -> last point (pt source_gain; chrF++ of the greedy pt->en translation): "
              + "; ".join(f"{name} step {res['points'][0]['step']} {res['points'][0]['por_Latn']['source_gain']:.2f} "
                          f"(chrF++ {res['points'][0]['chrf++_pt_en']:.1f}) -> step {res['points'][-1]['step']} "
                          f"{res['points'][-1]['por_Latn']['source_gain']:.2f} (chrF++ {res['points'][-1]['chrf++_pt_en']:.1f})"
                          for name, res in results.items()) + ".",
              "", "Recipes: " + "; ".join(f"{name}: {res['recipe']}" for name, res in results.items()) + ".",
              "", "Greedy pt->en at the last point, first held-out sentence: "
              + "; ".join(f"{name}: {res['points'][-1]['example'][0]!r}" for name, res in results.items()) + "."]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (RESULTS / "probe.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
