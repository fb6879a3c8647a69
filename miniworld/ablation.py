"""`python -m miniworld ablation`: every ablation row trained with the same seeds on the shipped bases, with one
shorter schedule (1/3 of the main job's steps, to fit 3 seeds of 6 rows in ~30 min on 2 cores; the general world's
stage 1 keeps its full length) shared by all rows,
the reference recipe included, so rows compare with each other; each row's difference from the reference is a
paired interval (stats.py). Rows that keep the reference's stage 1 share its folder (`shared_stage1`). Rows are
scored on the math problems (both answers); in the general world (`ablation --general --llm <family>`, the paper's
Figure 4) also on the summaries and on translation."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from . import experiments
from .bridge import StageSchedule
from .jobs import Job
from .pipeline import Plan, run_parts, step_generate, trained_system_jobs
from .report import AVG, claims_vs, estimates_dict, math_estimates, math_groups, table, translation_estimates

REFERENCE = experiments.load("ablation", "reference")
# name: (description, recipe: bridge.xbridge_jobs keyword arguments; None: the encoder-only baseline)
ABLATIONS = {name: (row["description"], None if row.get("encoder_only") else row["recipe"])
             for name, row in experiments.load("ablation", "rows").items()}
SCHEDULE_FRACTION = experiments.load("ablation", "schedule_fraction")
_RECIPE_KEYS = ("ot_backend", "lambda_ot", "merged", "defect")  # what a row may set (bridge.xbridge_jobs)
for _name, (_, _recipe) in ABLATIONS.items():
    if _recipe is not None and set(_recipe) - set(_RECIPE_KEYS):
        raise ValueError(f"{experiments.CONFIGS / 'ablation.yaml'}: row {_name!r} sets {sorted(set(_recipe) - set(_RECIPE_KEYS))}; "
                         f"a recipe takes {list(_RECIPE_KEYS)}")
if REFERENCE not in ABLATIONS:
    raise ValueError(f"{experiments.CONFIGS / 'ablation.yaml'}: reference {REFERENCE!r} is not a row: {list(ABLATIONS)}")


def folder_name(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")


def ablation_schedule(plan: Plan) -> StageSchedule:
    """The main job's schedule cut to `SCHEDULE_FRACTION`, except the general world's stage 1: it reads only after
    its loss drop (~step 900, ANALYSIS.md 9), so a third of it would ablate bridges that cannot read."""
    short = plan.schedule.scaled(SCHEDULE_FRACTION)
    if plan.general:
        short = replace(short, stage1=plan.schedule.stage1, enc_only1=plan.schedule.enc_only1)
    return short


def shared_stage1(plan: Plan, main_schedule: StageSchedule, name: str, seed: int) -> dict:
    """`{"stage1": folder}` for rows whose stage 1 is the reference's (the merged stages change only what follows
    it): the main job's own stage 1 when the ablation's is as long (the general world; one run serves both, and a
    finished main job's is reused), else the reference row's; {} for rows with a stage 1 of their own."""
    if name == "no decoder (encoder-only)":
        same = plan.schedule.enc_only1 == main_schedule.enc_only1
        return {"stage1": plan.out / "encoder-only" / f"seed{seed}" / "stage1"} if same else {}
    if name not in (REFERENCE, "stages 2+3 merged"):
        return {}
    root = plan.out / "xbridge" if plan.schedule.stage1 == main_schedule.stage1 else plan.out / "ablation" / folder_name(REFERENCE)
    return {"stage1": root / f"seed{seed}" / "stage1"}


def ablation_parts(plan: Plan) -> tuple[list[Job], Callable[[dict], dict]]:
    """Every ablation row's jobs (each seed), and what turns their results into the ablation report."""
    main_schedule, plan = plan.schedule, replace(plan, schedule=ablation_schedule(plan))
    step_generate(plan)
    nmt, llm = plan.base_folders()
    jobs = []
    for name, (_, recipe) in ABLATIONS.items():
        system = "xbridge-encoder-only" if recipe is None else "xbridge"
        for seed in plan.seeds:
            jobs += trained_system_jobs(plan, system, seed, plan.out / "ablation" / folder_name(name), nmt, llm,
                                        tag=name, translation=plan.general, **(recipe or {}),
                                        **shared_stage1(plan, main_schedule, name, seed))

    def report(done: dict) -> dict:
        rows = {name: [done[f"{name}/s{seed}/eval"] for seed in plan.seeds] for name in ABLATIONS}
        return write_ablation_report(plan, rows)

    return jobs, report


def run_ablation(plan: Plan, workers: int | None = None) -> dict:
    return run_parts({"ablation": lambda: ablation_parts(plan)}, plan.results, "ablation", workers, plan.kernels)["ablation"]


def write_ablation_report(plan: Plan, rows: dict[str, list[dict]]) -> dict:
    from .report import bar_chart  # noqa: PLC0415

    results = plan.results
    results.mkdir(parents=True, exist_ok=True)
    columns = [lang for lang in math_groups(rows[REFERENCE], "answer-en")] + [AVG]
    english = {name: math_estimates(runs, "answer-en") for name, runs in rows.items()}
    in_language = {name: e for name, runs in rows.items() if (e := math_estimates(runs, "answer-x"))}
    summary = {name: e for name, runs in rows.items() if (e := math_estimates(runs, "summary"))}
    translation = {f"{name} {d}": e for name, runs in rows.items() for d in ("x-en", "en-x")
                   if (e := translation_estimates(runs, d, pooled=True))}
    diffs = claims_vs(rows, REFERENCE)
    s = plan.schedule
    general = [*(["## Summary ROUGE-L in the story's language (encoder-only writes English only)", "",
                  *table(summary, columns, "variant"), ""] if summary else []),
               *(["## Translation chrF++ (held-out sentences; avg: every non-English sentence as one corpus)", "",
                  *table(translation, columns[1:], "variant / direction"), ""] if translation else [])]
    lines = ["# Mini-world ablation" + (f": the general world, LLM `{plan.llm}`" if plan.general else ""), "",
             f"Every row: the shipped bases{' of the general world' if plan.general else ''}, seeds "
             f"{', '.join(map(str, plan.seeds))}, stage steps {s.stage1}/{s.stage2}/"
             f"{s.stage3} (encoder-only {s.enc_only1}/{s.enc_only2}), batch {s.batch}, lr {s.lr}. Cells: mean ± seed "
             "sd [95% interval over problems and seeds].", "",
             "## English answer accuracy (LLM output)", "", *table(english, columns, "variant"), "",
             "## Answer accuracy in the question's language (decoder output; encoder-only has none)", "",
             *table(in_language, columns, "variant"), "", *general,
             f"## Each row minus the reference ({REFERENCE}), paired", "",
             "| variant | answer | scope | difference [95%] | verdict |", "| --- | --- | --- | --- | --- |",
             *[f"| {d['variant']} | {d['task']} | {d['scope']} | {d['text']} | {d['verdict']} |" for d in diffs], "",
             "Variants:", "", *[f"- **{name}**: {desc}" for name, (desc, _) in ABLATIONS.items()]]
    (results / "ablation.md").write_text("\n".join(lines) + "\n")
    bar_chart(english, columns, "Ablation: English answer accuracy (%)", results / "ablation_en.png")
    bar_chart(in_language, columns, "Ablation: answer accuracy in the question's language (%)", results / "ablation_x.png")
    if summary:
        bar_chart(summary, columns, "Ablation: summary ROUGE-L", results / "ablation_summary.png")
    if translation:
        bar_chart(translation, columns[1:], "Ablation: chrF++", results / "ablation_translation.png")
    out = dict(seeds=list(plan.seeds), schedule=s.__dict__, english=estimates_dict(english),
               question_language=estimates_dict(in_language), differences=diffs,
               **({"summary": estimates_dict(summary), "translation": estimates_dict(translation)} if plan.general else {}))
    (results / "ablation.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    return out

