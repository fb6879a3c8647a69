"""`python -m miniworld sweep --llm llama`: translate-test and XBridge as the NMT gets worse (issue 13).

Real NLLB-200 is far from this world's NMT (chrF 95-100 on every language) on its low-resource languages. The sweep
trains one more translation model, `nmt-sweep`: exactly nmt-general's recipe, with only a share of some languages'
translation pairs (`NMT_SWEEP_LEVELS`, miniworld/configs/sweep.yaml: 100/10/3/1%). Everything else is the general main job's: the world, the
LLM, the XBridge recipe, the seeds (the stage data too, but for the cuts below). Each language is one point: the NMT's own x->en chrF++
against the task scores of translate-test (which translates with that NMT) and XBridge (whose encoder and decoder
are that NMT's). The main job over nmt-general gives every language's 100% point; its results are read back from
`results/miniworld/general/<llm>/results.json`.

XBridge runs three times over the sweep NMT: on the main job's stage data (`xbridge`: its stage 1 has all ~2,000 of
a language's translation records, 11x the rows the 1% NMT saw); with stage 1's records cut to the same levels
(`xbridge (matched pairs)`), as a real low-resource language is short of parallel text for the NMT and the bridge
alike; and with the task records of stages 2-3 cut as well (`xbridge (matched pairs and task data)`): each holds an
English answer or summary and its translation, ~1,200 per seen language, so they are parallel text too. The paper's
XL-Sum setting is the second (task data in every language); the third asks what is left without them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from . import experiments, stats
from .bases import BaseConfig, keeps_pair, pretrain
from .evaluate import evaluate
from .jobs import Job
from .runs import mark_data_done, read_jsonl, write_jsonl
from .pipeline import STEP_COST, Plan, run_parts, step_generate, trained_system_jobs
from .report import AVG, error_bars, label, math_estimates, math_groups, translation_estimates
from .world import ENGLISH, LOW_RESOURCE, short_code

MATCHED = "xbridge (matched pairs)"  # XBridge whose stage-1 records are cut to the sweep NMT's levels
MATCHED_ALL = "xbridge (matched pairs and task data)"  # ... and its task records as well
SYSTEMS = ("translate-test", "xbridge", MATCHED, MATCHED_ALL)
NMT_SWEEP_LEVELS = experiments.load("sweep", "levels")  # language: its share of the sweep NMT's pairs
NMT_SWEEP_LEVELS_SHORT = {short_code(code) for code in NMT_SWEEP_LEVELS}
TASKS = {"answer-en": "math, English answer (accuracy %)", "answer-x": "math, answer in the question's language (%)",
         "summary": "summary in the story's language (ROUGE-L)"}


def evaluate_after_nmt(system: str, benchmarks: tuple[str, ...], world: str, out: str, langs: list[str],
                       limit: int | None, models: dict, instructed: bool, _nmt: str) -> dict:
    """An untrained system's evaluation, as a job that waits for the sweep's NMT (whose folder it is handed)."""
    return evaluate(system, benchmarks, world, out, langs, limit, models, instructed)


def keeps_record(row: dict, levels: dict[str, float], english: str = "en_text") -> bool:
    """Whether a record (text in one or two languages, with its English in the field `english`: a stage-1 record's
    `en_text`, a task record's `answer_en`) survives the levels: each of its non-English languages must keep the pair
    of that language with the same English sentence, so the bridge's records at a level are drawn by the same hash as
    the sweep NMT's pairs (`bases.keeps_pair`)."""
    return all(keeps_pair(dict(src_lang=ENGLISH, src_text=row[english], tgt_lang=lang, tgt_text=""), levels)
               for lang in {row["src_lang"], row["tgt_lang"]} - {ENGLISH})


def write_matched_data(data_dir: Path, out: Path, task: bool = False) -> Path:
    """`out`/stage1.jsonl: `data_dir`'s stage-1 records that survive NMT_SWEEP_LEVELS; `out`/task.jsonl: the task
    records, cut the same way if `task`, else whole. Written atomically, the same files on every run (the filter is
    a hash, not a draw)."""
    for name, english, cut in (("stage1.jsonl", "en_text", True), ("task.jsonl", "answer_en", task)):
        rows = read_jsonl(data_dir / name)
        write_jsonl(out / name, [r for r in rows if keeps_record(r, NMT_SWEEP_LEVELS, english)] if cut else rows)
    mark_data_done(out, dict(levels=NMT_SWEEP_LEVELS, task_cut=task))
    return out


def sweep_plan(main: Plan) -> Plan:
    """The sweep beside an LLM's main job: its run and results in the `sweep/` subfolders of the main job's."""
    return replace(main, out=main.out / "sweep", results=main.results / "sweep")


def sweep_jobs(plan: Plan) -> list[Job]:
    """The sweep NMT, then the NMT and translate-test evaluated over it and XBridge trained on it (every seed)."""
    step_generate(plan)
    nmt, (_, llm) = str(plan.out / "nmt-sweep"), plan.base_folders()
    world, langs = str(plan.world_dir), plan.eval_langs()
    jobs = [Job("nmt-sweep", pretrain, ("nmt-sweep", world, nmt, BaseConfig.general(), NMT_SWEEP_LEVELS),
                cost=BaseConfig.general().nmt_steps * STEP_COST["nmt-general"])]
    for system, models in {"nmt": dict(nmt=nmt), "translate-test": dict(nmt=nmt, llm=llm)}.items():
        jobs.append(Job(f"{system}/eval", evaluate_after_nmt, (system, plan.benchmarks(system), world,
                                                               str(plan.out / "eval"), langs, plan.limit, models, True),
                        after=("nmt-sweep",), cost=40.0, cache=plan.kept(plan.out / "eval" / system)))
    matched = write_matched_data(plan.data_dir, plan.out / "matched-data")
    matched_all = write_matched_data(plan.data_dir, plan.out / "matched-all-data", task=True)
    for seed in plan.seeds:
        for tag, root, data in (("xbridge", plan.out / "xbridge", None), (MATCHED, plan.out / "xbridge-matched", matched)):
            first, *rest = trained_system_jobs(plan, "xbridge", seed, root, nmt, llm, tag, translation=False, data=data)
            jobs += [replace(first, after=("nmt-sweep",)), *rest]
        # the same stage-1 records as MATCHED: its stage 1 goes on to stages 2-3 on the cut task data
        stage1 = plan.out / "xbridge-matched" / f"seed{seed}" / "stage1"
        _, stage2, *rest = trained_system_jobs(plan, "xbridge", seed, plan.out / "xbridge-matched-all", nmt, llm,
                                               MATCHED_ALL, translation=False, data=matched_all, stage1=stage1)
        jobs += [replace(stage2, after=(f"{MATCHED}/s{seed}/stage1",)), *rest]
    return jobs


def sweep_parts(plan: Plan, main_results: Path) -> tuple[list[Job], Callable[[dict], dict]]:
    """The sweep's jobs, and what turns their results (and the main job's, in `main_results`) into its report."""
    def report(done: dict) -> dict:
        per_system = {"nmt": [done["nmt/eval"]], "translate-test": [done["translate-test/eval"]],
                      **{system: [done[f"{system}/s{seed}/eval"] for seed in plan.seeds] for system in SYSTEMS[1:]}}
        return write_sweep_report(plan, per_system, json.loads((main_results / "results.json").read_text()))

    return sweep_jobs(plan), report


def run_sweep(plan: Plan, main_results: Path, workers: int | None = None) -> dict:
    return run_parts({"sweep": lambda: sweep_parts(plan, main_results)}, plan.results, "sweep", workers, plan.kernels)["sweep"]


def _from_main(main: dict, system: str, task: str) -> dict[str, stats.Estimate]:
    section = main["summary"] if task == "summary" else main["math"][task]
    return {lang: stats.Estimate.from_dict(d) for lang, d in section.get(system, {}).items()}


def write_sweep_report(plan: Plan, per_system: dict[str, list[dict]], main: dict) -> dict:
    """README.md (one row per language and data level), sweep.json and sweep.png (scores against the NMT's chrF++)."""
    results = plan.results
    results.mkdir(parents=True, exist_ok=True)
    # every language's share of the translation pairs in the sweep's NMT (the low-resource one has its usual share)
    levels = {short_code(LOW_RESOURCE): plan.world.low_resource_fraction,
              **{short_code(code): level for code, level in NMT_SWEEP_LEVELS.items()}}
    directions = ("x-en", "en-x")
    # each NMT's estimates per language, computed once: the sweep's from its runs, the main job's from its results
    by_nmt = {"nmt-sweep": ({d: translation_estimates(per_system["nmt"], d) for d in directions},
                            {(s, t): math_estimates(per_system[s], t) for s in SYSTEMS for t in TASKS}),
              "nmt-general": ({d: {lang: stats.Estimate.from_dict(e) for lang, e in main["translation"][f"nmt {d}"].items()}
                               for d in directions}, {(s, t): _from_main(main, s, t) for s in SYSTEMS for t in TASKS})}
    langs = [lang for lang in by_nmt["nmt-sweep"][0]["x-en"] if lang != AVG]
    points = []  # one per (language, NMT): the sweep's, and the main job's (nmt-general: every language at 100%)
    for lang in langs:
        for nmt, (chrf, scores) in by_nmt.items():
            if nmt == "nmt-general" and lang not in NMT_SWEEP_LEVELS_SHORT:
                continue  # the sweep's NMT has all of its usual pairs: the main job's point repeats it
            points.append(dict(lang=lang, nmt=nmt, level=levels.get(lang, 1.0) if nmt == "nmt-sweep" else 1.0,
                               chrf={d: chrf[d][lang] for d in directions},
                               scores={key: by_lang.get(lang) for key, by_lang in scores.items()}))
    # each XBridge minus translate-test over the sweep's NMT (the claim per level), what the bridge's stage-1 pairs
    # add (all of them minus matched), and what its task data add; paired over problems / stories
    comparisons = (*((xb, "translate-test") for xb in SYSTEMS[1:]), ("xbridge", MATCHED), (MATCHED, MATCHED_ALL))
    diffs = {}
    for a, b in comparisons:
        for task in TASKS:
            ga, gb = math_groups(per_system[a], task), math_groups(per_system[b], task)
            for lang in langs:
                if lang in ga and lang in gb:
                    diffs[(a, b, lang, task)] = stats.difference([ga[lang]], [gb[lang]])
    seeds = ", ".join(map(str, plan.seeds))
    header = ("| language | NMT | its pairs | NMT chrF++ x->en | NMT chrF++ en->x | "
              + " | ".join(f"{s}: {TASKS[t].split(' (')[0]}" for t in TASKS for s in SYSTEMS) + " |")
    lines = [f"# The NMT-quality sweep: translate-test and XBridge as the NMT gets worse (LLM `{plan.llm}`)", "",
             "`python -m miniworld sweep --llm " + plan.llm + "`. One more NMT (`nmt-sweep`) trained exactly like "
             "nmt-general but on a share of some languages' translation pairs; the LLM, XBridge's recipe and stage "
             f"data, and the seeds ({seeds}) are the main job's. `{MATCHED}`: XBridge with its stage-1 records cut to "
             "the same shares, by the same hash (the task data of stages 2-3 whole); `xbridge` has all of them "
             f"(~2,000 per seen language); `{MATCHED_ALL}`: the task records (an English answer or summary and its "
             "translation, ~1,200 per seen language) cut as well. Rows `nmt-general` are the main job's (every "
             "language's pairs, results/miniworld/general/" + plan.llm + "/). Cells: mean ± seed sd [95% interval]; "
             "translate-test is untrained (one run: its interval is over the test items). The shares (`miniworld/configs/sweep.yaml`) "
             "were fixed before any result was seen; the pairs kept are chosen by a hash of language and sentence.", "",
             header, "| --- " * (5 + len(TASKS) * len(SYSTEMS)) + "|"]
    for p in points:
        cells = [label(p["lang"]), p["nmt"], f"{100 * p['level']:g}%", p["chrf"]["x-en"].fmt(), p["chrf"]["en-x"].fmt()]
        cells += [p["scores"][(s, t)].fmt() if p["scores"][(s, t)] else "-" for t in TASKS for s in SYSTEMS]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Differences over the sweep's NMT (paired over the same test items)", "",
              "| system | minus | language | its pairs | task | difference [95%] | verdict |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for (a, b, lang, task), d in diffs.items():
        lines.append(f"| {a} | {b} | {label(lang)} | {100 * levels.get(lang, 1.0):g}% | {TASKS[task]} | {d.fmt()} | "
                     f"{stats.verdict(d)} |")
    lines += ["", "![scores against the NMT's chrF++](sweep.png)", ""]
    (results / "README.md").write_text("\n".join(lines) + "\n")
    sweep_plot(points, results / "sweep.png", plan.llm)
    out = dict(seeds=list(plan.seeds), levels=NMT_SWEEP_LEVELS, llm=plan.llm,
               points=[dict(lang=p["lang"], nmt=p["nmt"], level=p["level"], chrf={d: e.to_dict() for d, e in p["chrf"].items()},
                            scores={f"{s} {t}": e.to_dict() for (s, t), e in p["scores"].items() if e}) for p in points],
               differences={f"{a} - {b} {lang} {task}": d.to_dict() for (a, b, lang, task), d in diffs.items()})
    (results / "sweep.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def sweep_plot(points: list[dict], path: Path, llm: str) -> None:
    """One panel per task: each language over the sweep's NMT, ordered by that NMT's own x->en chrF++ (in the tick
    labels; most languages sit at 94-100, so a chrF++ axis would stack them), every system side by side."""
    from .report import plt  # noqa: PLC0415  (matplotlib, configured for files)

    sweep = sorted((p for p in points if p["nmt"] == "nmt-sweep"), key=lambda p: -p["chrf"]["x-en"].mean)
    ticks = [f"{label(p['lang'])} {100 * p['level']:g}%\nchrF++ {p['chrf']['x-en'].mean:.0f}" for p in sweep]
    fig, axes = plt.subplots(1, len(TASKS), figsize=(5 * len(TASKS), 4.2), squeeze=False)
    styles = {"translate-test": dict(marker="s", color="tab:orange"), "xbridge": dict(marker="o", color="tab:blue"),
              MATCHED: dict(marker="^", color="tab:green"), MATCHED_ALL: dict(marker="v", color="tab:red")}
    for ax, task in zip(axes[0], TASKS):
        for k, system in enumerate(SYSTEMS):
            shown = [(j, p["scores"][(system, task)]) for j, p in enumerate(sweep) if p["scores"][(system, task)]]
            ax.errorbar([j + 0.15 * (k - (len(SYSTEMS) - 1) / 2) for j, _ in shown], [e.mean for _, e in shown],
                        yerr=error_bars([e for _, e in shown]),
                        linestyle="none", capsize=2, label=system, **styles[system])
        ax.set_xticks(range(len(sweep)), ticks, fontsize=7)
        ax.set_xlabel("language, its share of the NMT's pairs, the NMT's own x->en chrF++")
        ax.set_title(TASKS[task], fontsize=9)
        ax.set_ylim(0, 100)
    axes[0][0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)  # below: never over a point
    fig.suptitle(f"NMT-quality sweep (LLM {llm}; bars: 95% interval)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
