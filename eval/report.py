"""Compare saved runs: a markdown table per (benchmark, task, metric) with systems as rows and languages as
columns, the average, and the low-resource average (bn, sw, th); plus one PNG bar chart per table."""

import json
import math
import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from .languages import LOW_RESOURCE, PAPER_LANGS, short  # noqa: E402

LOW = {short(code) for code in LOW_RESOURCE}
_ORDER = {code: i for i, code in enumerate(PAPER_LANGS + ("te",))}


def find_scores(paths) -> list[dict]:
    """Every scores.json under the given folders (or the files themselves)."""
    found = []
    for path in map(Path, paths):
        files = [path] if path.is_file() else sorted(path.rglob("scores.json"))
        if not files:
            raise FileNotFoundError(f"no scores.json under {path}")
        found += [json.loads(f.read_text(encoding="utf-8")) for f in files]
    return found


def _column_order(column: str):
    return tuple(_ORDER.get(part, 99) for part in column.split("-")), column


def _mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def tables(runs: list[dict]) -> dict:
    """{(benchmark, task, metric): {"columns": [...], "rows": {system: {column: value}}}}."""
    out = defaultdict(lambda: {"columns": set(), "rows": defaultdict(dict)})
    labels = _labels(runs)
    for run, label in zip(runs, labels):
        for row in run["scores"]:
            table = out[(run["benchmark"], row["task"], row["metric"])]
            table["columns"].add(row["lang"])
            table["rows"][label][row["lang"]] = row["value"]
    for table in out.values():
        table["columns"] = sorted(table["columns"], key=_column_order)
    return dict(sorted(out.items()))


def _labels(runs):
    """Row labels: the system name, plus the model when one system appears with several models."""
    models = defaultdict(set)
    for run in runs:
        models[(run["benchmark"], run["system"])].add(run.get("model"))
    return [
        run["system"] if len(models[(run["benchmark"], run["system"])]) == 1
        else f"{run['system']} ({Path(str(run.get('model'))).name})"
        for run in runs
    ]


def _fmt(value):
    return "–" if value is None else f"{value:.1f}"


def markdown(all_tables: dict, notes: list[str]) -> str:
    lines = ["# Evaluation report", ""]
    for (benchmark, task, metric), table in all_tables.items():
        columns = table["columns"]
        low = [c for c in columns if all(part in LOW for part in c.split("-"))]
        header = columns + ["avg"] + (["low-res avg"] if low else [])
        lines += [f"## {benchmark} · {task} · {metric}", "", "| system | " + " | ".join(header) + " |",
                  "| --- |" + " ---: |" * len(header)]
        for label, values in table["rows"].items():
            cells = [values.get(c) for c in columns] + [_mean(values.get(c) for c in columns)]
            if low:
                cells.append(_mean(values.get(c) for c in low))
            lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in cells) + " |")
        lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in sorted(set(notes))] + [""]
    return "\n".join(lines)


def plot(key, table, path: Path) -> None:
    benchmark, task, metric = key
    columns, rows = table["columns"], table["rows"]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(columns) * max(1, len(rows)) ** 0.5 + 2), 3.2))
    width = 0.8 / max(1, len(rows))
    for i, (label, values) in enumerate(rows.items()):
        xs = [j + i * width for j in range(len(columns))]
        ax.bar(xs, [values.get(c) or 0.0 for c in columns], width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(columns))], columns)
    ax.set_ylabel(metric)
    ax.set_title(f"{benchmark} · {task}")
    ax.legend(fontsize="small", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_report(paths, output) -> list[Path]:
    """Write the markdown table to `output` and the charts beside it; returns the files written."""
    runs = find_scores(paths)
    all_tables = tables(runs)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    notes = [note for run in runs for note in run.get("notes", [])]
    output.write_text(markdown(all_tables, notes), encoding="utf-8")
    written = [output]
    for key, table in all_tables.items():
        name = re.sub(r"[^A-Za-z0-9]+", "_", "_".join(key)).strip("_")
        png = output.with_name(f"{output.stem}_{name}.png")
        plot(key, table, png)
        written.append(png)
    return written
