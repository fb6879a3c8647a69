"""results/: the mini-world's markdown tables, JSON and PNG plots. Every number that people compare carries its
seed spread and 95% interval (stats.py), and every claim is a paired difference read off its interval.

Files hold only numbers that repeat: the same command on the same machine writes the same bytes (wall times and
the machine go to `run_info.json`, pipeline.write_run_info).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402

from . import shipped, stats  # noqa: E402
from .evaluate import bleu_from_stats, chrf_from_stats  # noqa: E402
from .world import ENGLISH, LOW_RESOURCE, UNSEEN, short_code  # noqa: E402

EN = short_code(ENGLISH)
SYSTEM_ORDER = ["direct", "translate-test", "sft", "xbridge-encoder-only", "xbridge-encoder-only (stage 1)", "xbridge",
                "xbridge (stage 1)", "nmt"]  # (stage 1): the stage-1 bridges on translation (Table 1)
AVG = "avg (non-en)"
# evaluate.math_outcomes' error analysis of the answer in the question's language: task -> what the table calls it
ERROR_ANALYSIS = {"x-agrees": "states its English answer's number", "x-no-number": "states no number",
                  "x-in-script": "written in the language's script"}


def label(lang: str) -> str:
    if lang == short_code(UNSEEN):
        return f"{lang} (unseen)"
    if lang == short_code(LOW_RESOURCE):
        return f"{lang} (low-res)"
    return lang


# ------------------------------------------------------------------------------------------------ estimates
def math_groups(per_seed: list[dict], task: str) -> dict[str, list[list[float]]]:
    """{lang: per-seed item outcomes} for one system and task ("answer-en" / "answer-x"; "summary": ROUGE-L)."""
    benchmark = "xlsum" if task == "summary" else "mgsm"
    langs = per_seed[0].get(benchmark, {}).get(task, {})
    return {lang: [seed[benchmark][task][lang] for seed in per_seed] for lang in langs}


def math_estimates(per_seed: list[dict], task: str) -> dict[str, stats.Estimate]:
    groups = math_groups(per_seed, task)
    out = {lang: stats.accuracy(values) for lang, values in groups.items()}
    non_en = [values for lang, values in groups.items() if lang != EN]
    if non_en:
        out[AVG] = stats.mean_of(non_en)
    return out


def translation_estimates(per_seed: list[dict], direction: str, metric: str = "chrF++",
                          pooled: bool = False) -> dict[str, stats.Estimate]:
    """Corpus score per language; `pooled`: also AVG, one corpus score over every non-English sentence together
    (a corpus metric has no per-item mean to average, so the pooled corpus is its summary)."""
    key, scorer = ("flores", chrf_from_stats) if metric == "chrF++" else ("flores-bleu", bleu_from_stats)
    langs = per_seed[0].get(key, {}).get(direction, {})
    out = {lang: stats.corpus_score([seed[key][direction][lang] for seed in per_seed], scorer) for lang in langs}
    if pooled and out:
        out[AVG] = stats.corpus_score([np.concatenate([seed[key][direction][lang] for lang in langs])
                                       for seed in per_seed], scorer)
    return out


def estimates_dict(rows: dict[str, dict[str, stats.Estimate]]) -> dict:
    """{row: {column: Estimate}} as results.json holds it (`Estimate.to_dict` per cell)."""
    return {name: {column: e.to_dict() for column, e in cells.items()} for name, cells in rows.items()}


def target(diff: stats.Estimate, margin: float) -> str:
    """One-sided target "A >= B - margin" read off the interval of A - B."""
    if diff.lo >= -margin:
        return "met"
    if diff.hi < -margin:
        return "missed"
    return "undecided (interval spans the margin)"


def claims(per_system: dict[str, list[dict]]) -> list[dict]:
    """The comparisons the text makes, each a paired bootstrap difference with its verdict."""
    out = []
    xb = per_system.get("xbridge")
    if not xb:
        return out

    def add(claim, a_groups, b_groups, margin=None, scope=AVG):
        diff = stats.difference(a_groups, b_groups)
        verdict = stats.verdict(diff) if margin is None else target(diff, margin)
        out.append(dict(claim=claim, scope=scope, difference=diff.to_dict(), text=diff.fmt(), verdict=verdict))

    xb_en, xb_x = math_groups(xb, "answer-en"), math_groups(xb, "answer-x")
    langs = [lang for lang in xb_en if lang != EN]
    for other in ("direct", "translate-test", "sft", "xbridge-encoder-only"):
        if other in per_system:
            groups = math_groups(per_system[other], "answer-en")
            add(f"xbridge - {other}, English answer", [xb_en[l] for l in langs], [groups[l] for l in langs])
            for lang in langs:
                add(f"xbridge - {other}, English answer", [xb_en[lang]], [groups[lang]], scope=label(lang))
    if "direct" in per_system:
        llm_en = math_groups(per_system["direct"], "answer-en")[EN]  # the LLM alone on the English problems
        for lang in langs:  # problem i is the same problem in every language: paired
            margin = 10 if lang in (short_code(UNSEEN), short_code(LOW_RESOURCE)) else 5
            add(f"xbridge English answer >= LLM's English accuracy - {margin}", [xb_en[lang]], [llm_en], margin, label(lang))
    for lang in langs:
        if lang in xb_x:
            add("xbridge answer in the question's language >= its English answer - 5", [xb_x[lang]], [xb_en[lang]], 5,
                label(lang))
    xb_sum = math_groups(xb, "summary")
    for other in ("direct", "translate-test", "sft"):
        groups = math_groups(per_system[other], "summary") if other in per_system else {}
        shared = [lang for lang in xb_sum if lang != EN and lang in groups]
        if shared:
            add(f"xbridge - {other}, summary ROUGE-L", [xb_sum[l] for l in shared], [groups[l] for l in shared])
    return out


def claims_vs(rows: dict[str, list[dict]], reference: str) -> list[dict]:
    """Each row minus the reference row (paired over items): on the non-English average, the unseen and the
    low-resource language, for both answers and the summaries where both rows have them."""
    out = []
    scopes = [AVG, short_code(UNSEEN), short_code(LOW_RESOURCE)]
    for task in ("answer-en", "answer-x", "summary"):
        ref = math_groups(rows[reference], task)
        for name, runs in rows.items():
            groups = math_groups(runs, task)
            if name == reference or not groups or not ref:
                continue
            for scope in scopes:
                langs = [l for l in groups if l != EN] if scope == AVG else [scope]
                if not all(l in groups and l in ref for l in langs):
                    continue
                diff = stats.difference([groups[l] for l in langs], [ref[l] for l in langs])
                out.append(dict(variant=name, task=task, scope=label(scope), difference=diff.to_dict(), text=diff.fmt(),
                                verdict=stats.verdict(diff)))
    return out


# ------------------------------------------------------------------------------------------------ markdown
def table(rows: dict[str, dict[str, stats.Estimate]], columns: list[str], first: str = "system") -> list[str]:
    lines = [f"| {first} | " + " | ".join(label(c) for c in columns) + " |", "| --- |" + " --- |" * len(columns)]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(values[c].fmt() if c in values else "-" for c in columns) + " |")
    return lines


def per_seed_table(per_system: dict[str, list[dict]], seeds: tuple[int, ...]) -> list[str]:
    lines = ["| system | " + " | ".join(f"seed {s}" for s in seeds) + " |", "| --- |" + " --- |" * len(seeds)]
    for system, runs in per_system.items():
        if len(runs) != len(seeds):
            continue
        for task in ("answer-en", "answer-x"):
            groups = math_groups(runs, task)
            non_en = [v for lang, v in groups.items() if lang != EN]
            if non_en:
                means = [100 * sum(sum(g[s]) / len(g[s]) for g in non_en) / len(non_en) for s in range(len(seeds))]
                lines.append(f"| {system} ({task}) | " + " | ".join(f"{m:.1f}" for m in means) + " |")
    return lines


def error_bars(est: list[stats.Estimate]) -> list[list[float]]:
    """matplotlib's `yerr` for 95% intervals: the distances below and above each mean, never negative (a constant
    sample's bootstrap bound can differ from its mean in the last bit, and matplotlib refuses a negative one)."""
    return [[max(0.0, e.mean - e.lo) for e in est], [max(0.0, e.hi - e.mean) for e in est]]


def bar_chart(rows: dict[str, dict[str, stats.Estimate]], columns: list[str], title: str, path: Path, ymax=100) -> None:
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(columns)), 3.6))
    width = 0.8 / max(1, len(rows))
    for i, (name, values) in enumerate(rows.items()):
        xs = [j + i * width for j in range(len(columns)) if columns[j] in values]
        est = [values[c] for c in columns if c in values]
        ax.bar(xs, [e.mean for e in est], width, label=name, yerr=error_bars(est), capsize=2)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(columns))], [label(c) for c in columns], fontsize=8)
    ax.set_ylim(0, ymax)
    ax.set_title(title + " (bars: 95% interval)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def loss_chart(losses: dict[str, dict[str, list[float]]], path: Path) -> None:
    stages = sorted({key.rsplit("/", 1)[1] for key in losses})
    fig, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 3), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        for key, terms in losses.items():
            if key.endswith("/" + stage):
                for term, values in terms.items():
                    if term != "loss":
                        ax.plot(values, label=f"{term} {key.split('/')[1]}", alpha=0.8)
        ax.set_title(stage, fontsize=9)
        ax.set_xlabel("log step")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main_estimates(plan, per_system: dict[str, list[dict]], losses: dict) -> dict:
    """Every number of the main report, computed from the evaluations' outcomes (no file is written)."""
    columns = [short_code(c) for c in plan.eval_langs()] + [AVG]
    order = [s for s in SYSTEM_ORDER if s in per_system]
    math = {task: {s: math_estimates(per_system[s], task) for s in order} for task in ("answer-en", "answer-x")}
    math = {task: {s: v for s, v in rows.items() if v} for task, rows in math.items()}
    translation = {f"{s} {d}": translation_estimates(per_system[s], d, pooled=plan.general) for s in order
                   for d in ("x-en", "en-x")}
    translation = {k: v for k, v in translation.items() if v}
    trans_columns = columns[1:] if plan.general else columns[1:-1]  # the first world's tables had no pooled column
    bleu = {f"{s} {d}": translation_estimates(per_system[s], d, "BLEU", pooled=plan.general) for s in order
            for d in ("x-en", "en-x")}
    bleu = {k: v for k, v in bleu.items() if v} if plan.general else {}
    summary = {s: v for s in order if (v := math_estimates(per_system[s], "summary"))}
    # why the answers in the question's language trail the English ones (issue 13), for the systems with both
    errors = {f"{s}: {what}": v for s in order for task, what in ERROR_ANALYSIS.items()
              if (v := math_estimates(per_system[s], task))} if plan.general else {}
    checks = claims(per_system)
    kinds = ("nmt-general", f"llm-{plan.llm}") if plan.general else ("nmt", "llm")
    base = {"llm": shipped.metrics(kinds[1]), "nmt": shipped.metrics(kinds[0])} if not plan.bases else {}
    return dict(columns=columns, trans_columns=trans_columns, order=order, math=math, translation=translation,
                bleu=bleu, summary=summary, errors=errors, claims=checks, kinds=kinds, base=base, losses=losses)


def main_markdown(plan, per_system: dict[str, list[dict]], e: dict) -> str:
    """The main report's README.md from `main_estimates` (and the per-seed rows of `per_system`)."""
    columns, trans_columns, math, translation, bleu = e["columns"], e["trans_columns"], e["math"], e["translation"], e["bleu"]
    summary, errors, checks, kinds, base, losses = e["summary"], e["errors"], e["claims"], e["kinds"], e["base"], e["losses"]
    seeds = ", ".join(map(str, plan.seeds))
    command = f"python -m miniworld{' general --llm ' + plan.llm if plan.general else ''}{' --fast' if plan.fast else ''}"
    lines = [
        "# Mini-world results" + (f": the general world, LLM `{plan.llm}`" if plan.general else ""), "",
        f"`{command}`: " + (f"the bases `{plan.bases[0]}`, `{plan.bases[1]}`" if plan.bases else
                            f"the shipped bases (`xbridge-miniworld/{kinds[0]}`, `xbridge-miniworld/{kinds[1]}`)") +
        f", XBridge and encoder-only{' (and the SFT baseline, LoRA for as many steps as stage 2)' if plan.general else ''} "
        f"trained with seeds {seeds}, stage steps "
        f"{plan.schedule.stage1}/{plan.schedule.stage2}/{plan.schedule.stage3} (encoder-only "
        f"{plan.schedule.enc_only1}/{plan.schedule.enc_only2}), batch {plan.schedule.batch}, lr {plan.schedule.lr}; "
        f"{plan.limit or 'all'} held-out items per language.",
        f"Unseen language (no XBridge stage saw it): `{UNSEEN}`; low-resource: `{LOW_RESOURCE}`.", "",
        "Cells: mean over seeds ± standard deviation of the per-seed scores [95% bootstrap interval over items and "
        "seeds]. Untrained systems (direct, translate-test, nmt) have one run: their interval is over items only.", "",
        "## Math: accuracy of the English answer (LLM output)", "", *table(math["answer-en"], columns), "",
        "## Math: accuracy of the answer in the question's language (decoder output)", "",
        *table(math.get("answer-x", {}), columns), "",
        *(["## Math: why the answers in the question's language trail the English ones", "",
           "Each system's two answers to the same problem, compared item by item (% of problems): does the answer "
           "in the question's language state the number its English answer ended with (the way back kept what the "
           "LLM wrote), no number at all, and is it written in the language's script (not checked for the "
           "Latin-script languages, which English shares).", "", *table(errors, columns[1:], "system: measure"), ""]
          if errors else []),
        *(["## Summaries: ROUGE-L of the summary in the story's language", "", *table(summary, columns), ""]
          if summary else []),
        "## Translation: chrF++ on held-out sentences" + (" (avg: every non-English sentence as one corpus)"
                                                          if plan.general else ""), "",
        *table(translation, trans_columns, "system / direction"), "",
        *(["## Translation: BLEU on held-out sentences", "", *table(bleu, trans_columns, "system / direction"), ""]
          if bleu else []),
        "## Per seed (average over the non-English languages)", "", *per_seed_table(per_system, plan.seeds), "",
        "## Claims, judged on paired intervals", "",
        "A - B in points [95% interval]; `higher` / `lower` only when the interval excludes 0, targets `met` only "
        "when the interval clears the margin.", "",
        "| claim | scope | A - B | verdict |", "| --- | --- | --- | --- |",
        *[f"| {c['claim']} | {c['scope']} | {c['text']} | {c['verdict']} |" for c in checks], "",
        *(["## Base models (shipped)", "",
           f"English LLM alone: {base['llm']['accuracy']:.1f}% on {base['llm']['n']} held-out English problems. "
           "NMT chrF per pair: " + ", ".join(f"{k} {v:.1f}" for k, v in base["nmt"]["chrf"].items()) + ".", ""]
          if base else []),
        "## Stage losses (first -> last logged)", "",
        *[f"- {stage}: " + ", ".join(f"{k} {v[0]:.3f} -> {v[-1]:.3f}" for k, v in terms.items() if v)
          for stage, terms in losses.items()], "",
        "Plots: `math_en.png`, `math_x.png`, `translation.png`, " + ("`summaries.png`, " if summary else "") +
        "`losses.png`. Wall times and the machine: `run_info.json`.",
    ]
    return "\n".join(lines) + "\n"


def write_main_report(plan, per_system: dict[str, list[dict]], losses: dict) -> dict:
    """README.md, the plots and results.json of a main job (from `main_estimates`); returns the JSON's content."""
    results = plan.results
    results.mkdir(parents=True, exist_ok=True)
    e = main_estimates(plan, per_system, losses)
    columns, trans_columns, math, translation, bleu = e["columns"], e["trans_columns"], e["math"], e["translation"], e["bleu"]
    summary, errors, checks, base = e["summary"], e["errors"], e["claims"], e["base"]
    (results / "README.md").write_text(main_markdown(plan, per_system, e))
    bar_chart(math["answer-en"], columns, "English answer accuracy (%)", results / "math_en.png")
    if math.get("answer-x"):
        bar_chart(math["answer-x"], columns, "Answer accuracy in the question's language (%)", results / "math_x.png")
    if translation:
        bar_chart(translation, trans_columns, "chrF++", results / "translation.png")
    if summary:
        bar_chart(summary, columns, "Summary ROUGE-L, story's language", results / "summaries.png")
    loss_chart(losses, results / "losses.png")
    out = dict(seeds=list(plan.seeds), schedule=plan.schedule.__dict__, limit=plan.limit,
               math={task: estimates_dict(by) for task, by in math.items()}, translation=estimates_dict(translation),
               **({"summary": estimates_dict(summary)} if summary else {}),
               **({"translation_bleu": estimates_dict(bleu)} if bleu else {}),
               **({"answer_x_errors": estimates_dict(errors)} if errors else {}),
               claims=checks, losses=losses, bases={kind: {k: v for k, v in m.items() if k != "losses"} for kind, m in base.items()})
    (results / "results.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    return out


def write_bases_report(comparison: dict, results: Path, name: str = "bases") -> None:
    """`base_models[_general].md` / `.json`: the rebuilt bases' metrics beside the shipped ones'."""
    results.mkdir(parents=True, exist_ok=True)
    rebuilt, ship, same = comparison["rebuilt"], comparison["shipped"], comparison["identical"]

    def both(kind, get, digits=1):
        new = get(rebuilt[kind])
        old = get(ship[kind]) if kind in ship else None
        return f"{new:.{digits}f} | " + ("-" if old is None else f"{old:.{digits}f}")

    command = "python -m miniworld bases" + (" --general" if name == "bases-general" else "")
    lines = ["# Mini-world base models: rebuilt vs shipped", "", f"`{command}` pretrains the bases from scratch (one "
             "thread each, side by side) and compares them with the shipped checkpoints.", "",
             "| base | metric | rebuilt | shipped |", "| --- | --- | --- | --- |"]
    for kind, metrics in rebuilt.items():
        if kind.startswith("nmt"):
            lines += [f"| {kind} | chrF {pair} | {both(kind, lambda m, p=pair: m['chrf'][p])} |" for pair in metrics["chrf"]]
            continue
        lines.append(f"| {kind} | English math accuracy (%), {metrics['n']} problems | {both(kind, lambda m: m['accuracy'])} |")
        if "summary_rouge_l" in metrics:
            lines += [f"| {kind} | English summary ROUGE-L, {metrics['n_stories']} stories | "
                      f"{both(kind, lambda m: m['summary_rouge_l'])} |",
                      f"| {kind} | held-out story NLL per token | {both(kind, lambda m: m['story_nll'], 2)} |"]
    lines += ["", "Weights:", ""]
    for kind, result in same.items():
        if kind in comparison.get("from_last_report", ()):
            lines.append(f"- {kind}: not rebuilt by this run (its rebuilt column is the last report's)")
        elif result is None:
            lines.append(f"- {kind}: no shipped checkpoint to compare with")
        elif result["identical"]:
            lines.append(f"- {kind}: **identical bit for bit** to the shipped checkpoint on this machine")
        else:
            changed = result.get("changed_settings")
            why = (f"trained with other settings ({', '.join(f'`{k}` {a} -> {b}' for k, (a, b) in changed.items())})"
                   if changed else "with the same settings, data and code: another CPU type or library version")
            lines.append(f"- {kind}: differs from the shipped checkpoint (largest difference {result['max_abs_diff']:.3g} "
                         f"in `{result.get('worst_tensor')}`; inf: another shape): {why}; compare the metrics")
    if comparison.get("from_last_report"):
        lines += ["", f"This run (`{command} --what ...`) rebuilt "
                  f"{', '.join(k for k in rebuilt if k not in comparison['from_last_report'])}; the rebuilt column of "
                  f"{', '.join(comparison['from_last_report'])} is the last report's."]
    stem = "base_models" if name == "bases" else "base_models_general"
    (results / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (results / f"{stem}.json").write_text(json.dumps(comparison, indent=1, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------------ all LLMs
OVERVIEW_SCOPES = [AVG, short_code(UNSEEN), short_code(LOW_RESOURCE)]


def write_general_overview(root: Path, llms: list[str]) -> dict:
    """`<root>/README.md` + `overview.png`: the paper's Table 1 and Figure 3 with one column group per LLM, and
    every claim's verdict per LLM, from each LLM's `results.json` (written by its main job)."""
    per_llm = {llm: json.loads((root / llm / "results.json").read_text()) for llm in llms}

    def cell(value: dict | None) -> str:
        return stats.Estimate.from_dict(value).fmt() if value else "-"

    def grouped(rows: list[str], get) -> list[str]:
        head = [f"{llm}: {label(scope)}" for llm in llms for scope in OVERVIEW_SCOPES]
        lines = ["| system | " + " | ".join(head) + " |", "| --- |" + " --- |" * len(head)]
        for row in rows:
            lines.append(f"| {row} | " + " | ".join(cell(get(per_llm[llm], row, scope)) for llm in llms
                                                     for scope in OVERVIEW_SCOPES) + " |")
        return lines

    def rows_of(section: str, task: str | None = None) -> list[str]:
        names = {name for r in per_llm.values() for name in (r.get(section, {}).get(task, {}) if task else r.get(section, {}))}
        order = SYSTEM_ORDER + [f"{s} {d}" for d in ("x-en", "en-x") for s in SYSTEM_ORDER]
        return sorted(names, key=lambda n: order.index(n) if n in order else len(order))

    math = lambda task: lambda r, row, scope: r["math"].get(task, {}).get(row, {}).get(scope)  # noqa: E731
    other = lambda section: lambda r, row, scope: r.get(section, {}).get(row, {}).get(scope)  # noqa: E731
    claim_keys = []
    for r in per_llm.values():
        claim_keys += [(c["claim"], c["scope"]) for c in r["claims"] if (c["claim"], c["scope"]) not in claim_keys]
    verdicts = {llm: {(c["claim"], c["scope"]): c for c in r["claims"]} for llm, r in per_llm.items()}
    lines = [
        "# The general world on every LLM: the paper's Table 1 and Figure 3", "",
        "`python -m miniworld general --llm all` (or `paper`: with Figure 4 and the NMT sweep) runs the main job on each general LLM "
        f"({', '.join(f'`llm-{llm}`' for llm in llms)}) and writes this overview from their `results.json`; each LLM's "
        "per-language tables are in its folder. Cells: mean ± seed sd [95% interval]; `avg` is the non-English average "
        "(translation: every non-English sentence as one corpus); the unseen and the low-resource language are marked.",
        "", "## Table 1: translation, chrF++", "", *grouped(rows_of("translation"), other("translation")), "",
        "## Table 1: translation, BLEU", "", *grouped(rows_of("translation_bleu"), other("translation_bleu")), "",
        "## Figure 3: math, English answer accuracy (%)", "", *grouped(rows_of("math", "answer-en"), math("answer-en")), "",
        "## Figure 3: math, accuracy of the answer in the question's language (%)", "",
        *grouped(rows_of("math", "answer-x"), math("answer-x")), "",
        "## Figure 3: summaries in the story's language, ROUGE-L", "", *grouped(rows_of("summary"), other("summary")), "",
        "## Claims per LLM (paired intervals)", "", "| claim | scope | " + " | ".join(llms) + " |",
        "| --- | --- |" + " --- |" * len(llms),
        *[f"| {claim} | {scope} | " + " | ".join(
            f"{verdicts[llm][(claim, scope)]['text']}: {verdicts[llm][(claim, scope)]['verdict']}"
            if (claim, scope) in verdicts[llm] else "-" for llm in llms) + " |" for claim, scope in claim_keys], "",
        "Plot: `overview.png` (non-English averages with their intervals).",
    ]
    more = [f"- {what} on `llm-{llm}`: [{llm}/{path}]({llm}/{path})" for llm in llms for what, path in
            (("Figure 4, the ablation", "ablation.md"), ("The NMT-quality sweep", "sweep/README.md")) if (root / llm / path).exists()]
    if more:  # `python -m miniworld paper` (or `ablation --general` / `sweep`) made them
        lines += ["", "## Figure 4 and the NMT-quality sweep", "", *more]
    (root / "README.md").write_text("\n".join(lines) + "\n")
    panels = [("English answer accuracy (%)", math("answer-en"), rows_of("math", "answer-en")),
              ("answer in the question's language (%)", math("answer-x"), rows_of("math", "answer-x")),
              ("summary ROUGE-L", other("summary"), rows_of("summary")),
              ("translation chrF++", other("translation"), rows_of("translation"))]
    colours = {}  # one colour per system (and direction) across the panels
    for row in (row for _, _, rows in panels for row in rows):
        colours.setdefault(row, f"C{len(colours) % 10}")
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5))
    for ax, (title, get, rows) in zip(axes, panels):
        width = 0.8 / max(1, len(rows))
        for i, row in enumerate(rows):
            values = [get(per_llm[llm], row, AVG) for llm in llms]
            xs = [j + i * width for j, v in enumerate(values) if v]
            got = [stats.Estimate.from_dict(v) for v in values if v]
            ax.bar(xs, [e.mean for e in got], width, label=row, color=colours[row], yerr=error_bars(got), capsize=2)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(llms))], llms)
        ax.set_ylim(0, 100)
        ax.set_title(title + ", non-English avg", fontsize=9)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)  # below: never over a bar
    fig.tight_layout()
    fig.savefig(root / "overview.png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return per_llm
