"""results/: the mini-world's markdown tables, JSON and PNG plots, with the machine they ran on."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402

from .pipeline import machine  # noqa: E402
from .stages import summarise, targets  # noqa: E402
from .world import ENGLISH, LOW_RESOURCE, UNSEEN, short_code  # noqa: E402

SYSTEM_ORDER = ["direct", "translate-test", "xbridge-encoder-only", "xbridge", "nmt"]


def _lang_columns(plan) -> list[str]:
    info = json.loads((plan.world_dir / "world.json").read_text())
    return [short_code(ENGLISH)] + [short_code(c) for c in info["languages"]]


def _label(lang: str) -> str:
    if lang == short_code(UNSEEN):
        return f"{lang} (unseen)"
    if lang == short_code(LOW_RESOURCE):
        return f"{lang} (low-res)"
    return lang


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def markdown_table(rows: dict[str, dict[str, float]], columns: list[str], first: str = "system") -> list[str]:
    lines = [f"| {first} | " + " | ".join(_label(c) for c in columns) + " | avg (non-en) |",
             "| --- |" + " --- |" * (len(columns) + 1)]
    for name, values in rows.items():
        non_en = [values[c] for c in columns if c != "en" and values.get(c) is not None]
        avg = sum(non_en) / len(non_en) if non_en else None
        lines.append(f"| {name} | " + " | ".join(_fmt(values.get(c)) for c in columns) + f" | {_fmt(avg)} |")
    return lines


def bar_chart(rows: dict[str, dict[str, float]], columns: list[str], title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(columns)), 3.6))
    width = 0.8 / max(1, len(rows))
    for i, (name, values) in enumerate(rows.items()):
        xs = [j + i * width for j in range(len(columns))]
        ax.bar(xs, [values.get(c) or 0 for c in columns], width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(columns))], [_label(c) for c in columns], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loss_chart(losses: dict[str, dict[str, list[float]]], path: Path) -> None:
    fig, axes = plt.subplots(1, len(losses), figsize=(4 * len(losses), 3))
    for ax, (stage, terms) in zip(axes if len(losses) > 1 else [axes], losses.items()):
        for term, values in terms.items():
            if term != "loss":
                ax.plot(values, label=term)
        ax.set_title(stage, fontsize=9)
        ax.set_xlabel("log step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_main_report(plan, runs: list[dict], losses: dict, times: dict, results: Path) -> dict:
    results.mkdir(parents=True, exist_ok=True)
    table = summarise(runs)
    base = json.loads((plan.out / "base_eval" / "base_models.json").read_text())
    columns = _lang_columns(plan)
    seen = [c for c in columns if c not in ("en",)]
    checks = targets(table, seen)
    order = [s for s in SYSTEM_ORDER if s in table]
    en_rows = {s: table[s].get("mgsm:answer-en:accuracy", {}) for s in order if "mgsm:answer-en:accuracy" in table[s]}
    x_rows = {s: table[s].get("mgsm:answer-x:accuracy", {}) for s in order if "mgsm:answer-x:accuracy" in table[s]}
    tr_rows = {f"{s} {d}": table[s].get(f"flores:{d}:chrF++", {}) for s in order for d in ("x-en", "en-x")
               if f"flores:{d}:chrF++" in table[s]}
    # wall clock of the main job = its sequential parts (the parallel parts' own times are listed below)
    total = sum(times.get(k, 0) for k in ("generate", "pretrain_bases_wall", "eval_llm", "eval_nmt", "phase_b_wall"))
    lines = ["# Mini-world results", "",
             f"Main job (`python -m miniworld{' --fast' if plan.fast else ''}`): {total / 60:.1f} min wall clock in all.",
             f"Unseen language (no XBridge stage saw it): `{UNSEEN}`; low-resource: `{LOW_RESOURCE}`.", "",
             "## Math: accuracy of the English answer (LLM output)", "", *markdown_table(en_rows, columns), "",
             "## Math: accuracy of the answer in the question's language (decoder output)", "",
             *markdown_table(x_rows, columns), "",
             "## Translation: chrF++ on held-out sentences", "", *markdown_table(tr_rows, columns[1:], "system / direction"), "",
             "## Base models", "",
             f"English LLM alone: {base['llm']['accuracy']:.1f}% (by operations: "
             + ", ".join(f"{k}: {v:.0f}%" for k, v in base["llm"]["accuracy_by_ops"].items()) + ").",
             "NMT chrF per pair: " + ", ".join(f"{k} {v:.1f}" for k, v in base["nmt"]["chrf"].items()) + ".", "",
             "## Targets of issue 5", "",
             "Reference of the first rows: `direct` on English (the LLM alone, through the same harness).", "",
             "| target | lang | value | reference | met |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {c['target']} | {c['lang']} | {_fmt(c['value'])} | {_fmt(c['reference'])} | {'yes' if c['met'] else 'NO'} |"
              for c in checks]
    lines += ["", "## Stage losses (first -> last logged)", ""]
    for stage, terms in losses.items():
        lines.append(f"- {stage}: " + ", ".join(f"{k} {v[0]:.3f} -> {v[-1]:.3f}" for k, v in terms.items() if v))
    lines += ["", "## Timings (seconds)", "", *[f"- {k}: {v}" for k, v in times.items()], "",
              "## Machine", "", "```", json.dumps(machine(), indent=1), "```", "",
              "Plots: `math_en.png`, `math_x.png`, `translation.png`, `losses.png`."]
    (results / "README.md").write_text("\n".join(lines) + "\n")
    bar_chart(en_rows, columns, "English answer accuracy (%)", results / "math_en.png")
    bar_chart(x_rows, columns, "Answer accuracy in the question's language (%)", results / "math_x.png")
    if tr_rows:
        bar_chart(tr_rows, columns[1:], "chrF++", results / "translation.png")
    loss_chart(losses, results / "losses.png")
    out = dict(table=table, targets=checks, losses=losses, timings=times, base=base, machine=machine())
    (results / "results.json").write_text(json.dumps(out, indent=1, ensure_ascii=False))
    return out


def write_ablation_report(plan, rows: dict[str, dict], ablations: dict, results: Path, schedule) -> dict:
    results.mkdir(parents=True, exist_ok=True)
    columns = _lang_columns(plan)
    en_rows, x_rows = {}, {}
    for name, scores in rows.items():
        table = summarise([scores])[scores["system"]]
        en_rows[name] = table.get("mgsm:answer-en:accuracy", {})
        x_rows[name] = table.get("mgsm:answer-x:accuracy", {})
    lines = ["# Mini-world ablation", "",
             f"Every row: the main job's bases, stage steps {schedule.stage1}/{schedule.stage2}/{schedule.stage3} "
             f"(encoder-only {schedule.enc_only1}/{schedule.enc_only2}), batch {schedule.batch}, lr {schedule.lr}.", "",
             "English answer accuracy (LLM output):", "", *markdown_table(en_rows, columns, "variant"),
             "", "Answer accuracy in the question's language (decoder output; encoder-only has none):", "",
             *markdown_table({k: v for k, v in x_rows.items() if v}, columns, "variant"), "", "Variants:", ""]
    lines += [f"- **{name}**: {desc}" for name, (desc, _) in ablations.items() if name in rows]
    lines += ["- **no decoder (encoder-only)**: the MindMerger design, `python -m train encoder-only` stages 1-2", "",
              "## Machine", "", "```", json.dumps(machine(), indent=1), "```"]
    (results / "ablation.md").write_text("\n".join(lines) + "\n")
    bar_chart(x_rows, columns, "Ablation: answer accuracy in the question's language (%)", results / "ablation_x.png")
    bar_chart(en_rows, columns, "Ablation: English answer accuracy (%)", results / "ablation_en.png")
    out = dict(english=en_rows, question_language=x_rows, machine=machine())
    (results / "ablation.json").write_text(json.dumps(out, indent=1, ensure_ascii=False))
    return out
