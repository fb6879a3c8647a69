"""Issue 8, measure: the bridge options in the mini-world.

`python -m miniworld.options [--out runs/miniworld/options] [--results results/miniworld]`

Five encoder-side variants, each trained with ONE reduced schedule (the main job's stage flags, fewer steps):
stage 1 from the world's bases, then stage 2 on the task data; evaluated through eval/ as `xbridge-encoder-only`
(the LLM's English answer, `tgt_lang=None`; stage 3 is not needed for it) on the world's held-out problems.

  1. last            - the paper: last NLLB encoder layer, full stage-2 data
  2. global_softmax  - one learned softmax weight per encoder layer (embeddings included)
  3. token_softmax   - per-token layer weights from a one-layer transformer over the layer stack
  4. last + align    - stage 1 with the AlignX-style terms (lambda_align 0.3, lambda_lang 0.4)
  5. last, English-only stage 2 - variant 1's stage 1, stage 2 on the English task records only (zero-shot on
                       the other languages)

Writes `options.md` (variant x language, with seen / unseen / low-resource averages), `options.json` and
`options_layer_weights.png` (the learned fusion weights) into the results folder. Finished runs are reused
(a `COMPLETED` marker per training folder; eval/ resumes its predictions).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .bases import is_done, read_jsonl
from .evaluate import register_languages, run_benchmark
from .stages import StageSchedule, _common_flags, summarise, train
from .world import ENGLISH, LOW_RESOURCE, UNSEEN, short_code

REPO = Path(__file__).resolve().parent.parent
WORLD = REPO / "runs" / "miniworld" / "world"
BASES = REPO / "runs" / "miniworld" / "bases"

# One schedule for every variant: the main job's batch / lr / warmup / flags, fewer steps (CPU budget).
SCHEDULE = StageSchedule(stage1=100, stage2=200, stage3=0, batch=32, lr=5e-3, warmup=10)

VARIANTS = {
    # name: (description, stage-1 extra flags, stage-2 data ("full" | "english"), stage 1 shared with)
    "last": ("last encoder layer (the paper), full stage-2 data", [], "full", None),
    "global_softmax": ("softmax weight per encoder layer, shared by all tokens", ["--encoder_fusion", "global_softmax"], "full", None),
    "token_softmax": ("per-token layer weights (one-layer transformer over the layer stack)",
                      ["--encoder_fusion", "token_softmax"], "full", None),
    "last + align": ("last, stage 1 with InfoNCE alignment (0.3) + same-language matching (0.4)",
                     ["--lambda_align", "0.3", "--lambda_lang", "0.4"], "full", None),
    "last, English-only stage 2": ("variant 1's stage 1; stage 2 on English task records only, zero-shot elsewhere",
                                   [], "english", "last"),
}


def log(msg: str) -> None:
    print(f"[options {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def folder_name(name: str) -> str:
    return name.replace(", ", "-").replace(" + ", "-").replace(" ", "-")


def english_only_file(out: Path) -> Path:
    """Stage-2 task records whose source is English, written once into the out folder."""
    path = out / "task_eng_Latn.jsonl"
    if not path.exists():
        rows = [r for r in read_jsonl(WORLD / "task.jsonl") if r["src_lang"] == ENGLISH]
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        tmp.rename(path)
        log(f"English-only stage-2 data: {len(rows)} records -> {path}")
    return path


def run_variant(name: str, out: Path, stage1_ready: dict[str, threading.Event], timings: dict) -> dict:
    _, s1_extra, data, shared = VARIANTS[name]
    root = out / folder_name(name)
    bases = ["--nmt_name_or_path", str(BASES / "nmt"), "--llm_name_or_path", str(BASES / "llm")]
    t0 = time.time()
    saved = root / "timings.json"
    reused = saved.exists() and all(is_done(root / s) for s in ("stage1", "stage2") if s == "stage2" or shared is None)
    if shared is None:
        log(f"{name}: stage 1 ({SCHEDULE.stage1} steps{', reused' if is_done(root / 'stage1') else ''})")
        s1 = train(root / "stage1", ["train", "stage1", "--config", "train/configs/stage1.yaml"],
                   _common_flags(SCHEDULE, SCHEDULE.stage1, root / "stage1", WORLD / "stage1.jsonl") + bases
                   + ["--ot_backend", "relaxed"] + s1_extra, threads=1)
        stage1_ready[name].set()
    else:
        log(f"{name}: waiting for {shared!r} stage 1")
        stage1_ready[shared].wait()
        s1 = out / folder_name(shared) / "stage1"
    t1 = time.time()
    train_file = WORLD / "task.jsonl" if data == "full" else english_only_file(out)
    log(f"{name}: stage 2 ({SCHEDULE.stage2} steps, {data} data{', reused' if is_done(root / 'stage2') else ''}) from {s1}")
    s2 = train(root / "stage2", ["train", "stage2", "--config", "train/configs/stage2.yaml"],
               _common_flags(SCHEDULE, SCHEDULE.stage2, root / "stage2", train_file) + ["--model_name_or_path", str(s1)],
               threads=1)
    t2 = time.time()
    log(f"{name}: evaluating {s2}")
    langs = [ENGLISH, *register_languages(WORLD)]
    scores = run_benchmark("mgsm", "xbridge-encoder-only", WORLD, root / "eval", langs, model=str(s2))
    t3 = time.time()
    acc = summarise([scores])[scores["system"]]["mgsm:answer-en:accuracy"]
    if reused:  # a re-run that trained nothing: keep the first run's timings
        timings[name] = {"eval_s": round(t3 - t2, 1), **json.loads(saved.read_text())}
    else:
        timings[name] = dict(stage1_s=round(t1 - t0, 1) if shared is None else 0.0, stage2_s=round(t2 - t1, 1),
                             eval_s=round(t3 - t2, 1))
        saved.write_text(json.dumps(timings[name]))
    log(f"{name}: done in {t3 - t0:.0f}s: {acc}")
    return dict(model=str(s2), stage1=str(s1), accuracy=acc,
                losses={s: json.loads((p / "COMPLETED").read_text()).get("losses", {})
                        for s, p in (("stage1", s1), ("stage2", s2))})


# ------------------------------------------------------------------------------------------- layer weights
def layer_weights(results: dict) -> dict:
    """global_softmax: softmax(layer_logits); token_softmax: the mean per-layer weight over the real tokens of
    the test questions, per language (and over all languages)."""
    import torch  # noqa: PLC0415

    from modeling_xbridge import XBridgeForConditionalGeneration  # noqa: PLC0415
    from processing_xbridge import XBridgeProcessor  # noqa: PLC0415

    out: dict = {}
    for name in ("global_softmax", "token_softmax"):
        if name not in results:
            continue
        path = results[name]["model"]
        model = XBridgeForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
        fusion = model.encoder_fusion
        if name == "global_softmax":
            out[name] = dict(all=fusion.layer_logits.detach().float().softmax(-1).tolist())
            continue
        processor = XBridgeProcessor.from_pretrained(path)
        per_lang, total, count = {}, None, 0
        for code in [ENGLISH, *register_languages(WORLD)]:
            tsv = WORLD / "test" / "mgsm" / f"mgsm_{short_code(code)}.tsv"
            texts = [line.split("\t")[0] for line in tsv.read_text(encoding="utf-8").splitlines() if line.strip()][:64]
            batch = processor(texts, src_lang=code, prompt=False)
            with torch.no_grad():
                hidden = model.nmt.model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                                 output_hidden_states=True).hidden_states
                w = fusion.layer_weights(torch.stack(hidden, 2), batch["attention_mask"])  # (B, L, S)
            keep = batch["attention_mask"].bool()
            tok = w[keep]  # (N, S)
            per_lang[short_code(code)] = tok.mean(0).tolist()
            total = tok.sum(0) if total is None else total + tok.sum(0)
            count += tok.shape[0]
        out[name] = dict(all=(total / count).tolist(), per_language=per_lang,
                         n_tokens=count, note="mean over the real tokens of up to 64 test questions per language")
    return out


def plot_layer_weights(weights: dict, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if "global_softmax" in weights:
        w = weights["global_softmax"]["all"]
        labels = ["emb"] + [str(i) for i in range(1, len(w))]
        axes[0].bar(labels, w, color="tab:blue")
        axes[0].axhline(1 / len(w), color="grey", ls="--", lw=1, label="uniform (init)")
        axes[0].set_title("global_softmax: softmax(layer_logits)")
        axes[0].legend()
    if "token_softmax" in weights:
        t = weights["token_softmax"]
        labels = ["emb"] + [str(i) for i in range(1, len(t["all"]))]
        for lang, w in t.get("per_language", {}).items():
            axes[1].plot(labels, w, marker="o", lw=1, alpha=0.7, label=lang)
        axes[1].plot(labels, t["all"], color="black", lw=2.5, label="all")
        axes[1].axhline(1 / len(t["all"]), color="grey", ls="--", lw=1)
        axes[1].set_title("token_softmax: mean per-token weight (test questions)")
        axes[1].legend(fontsize=7, ncol=2)
    for ax in axes:
        ax.set_xlabel("NLLB encoder layer (emb = embeddings)")
        ax.set_ylabel("weight")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------- report
def groups() -> dict[str, list[str]]:
    info = json.loads((WORLD / "world.json").read_text())
    seen = [short_code(c) for c in info["seen"] if c != LOW_RESOURCE]
    return dict(seen=seen, unseen=[short_code(UNSEEN)], low_resource=[short_code(LOW_RESOURCE)])


def _avg(acc: dict, langs: list[str]):
    vals = [acc[lang] for lang in langs if lang in acc]
    return round(sum(vals) / len(vals), 1) if vals else None


def reference_rows() -> dict:
    """The main job's LLM-alone and encoder-only rows (English answer), when its eval folder has them."""
    refs = {}
    for system, label in (("direct", "ref: LLM alone (direct)"), ("translate-test", "ref: translate-test"),
                          ("xbridge-encoder-only", "ref: main-job encoder-only")):
        path = REPO / "runs" / "miniworld" / "eval" / "mgsm" / system / "scores.json"
        if path.exists():
            refs[label] = summarise([json.loads(path.read_text())])[system]["mgsm:answer-en:accuracy"]
    return refs


def write_report(results: dict, weights: dict, timings: dict, out: Path, dest: Path, wall: float, missing: list[str]) -> dict:
    dest.mkdir(parents=True, exist_ok=True)
    g = groups()
    langs = ["en", *g["seen"], *g["unseen"], *g["low_resource"]]
    rows = {}
    for name in VARIANTS:
        if name not in results:
            continue
        acc = results[name]["accuracy"]
        rows[name] = dict(accuracy=acc, seen_avg=_avg(acc, g["seen"]), unseen_avg=_avg(acc, g["unseen"]),
                          low_resource_avg=_avg(acc, g["low_resource"]),
                          non_english_avg=_avg(acc, [lang for lang in langs if lang != "en"]))
    data = dict(schedule=dict(stage1_steps=SCHEDULE.stage1, stage2_steps=SCHEDULE.stage2, batch=SCHEDULE.batch,
                              lr=SCHEDULE.lr, warmup=SCHEDULE.warmup, base_flags="miniworld.stages._common_flags"),
                metric="mgsm answer-en accuracy (%), xbridge-encoder-only (LLM English answer), 100 problems per language",
                groups=g, variants={n: VARIANTS[n][0] for n in VARIANTS}, results=rows,
                layer_weights=weights, timings_s=timings, wall_s=round(wall, 1), not_finished=missing,
                runs={n: results[n]["model"] for n in results},
                final_losses={n: {s: {k: v[-1] for k, v in l.items() if v} for s, l in results[n]["losses"].items()}
                              for n in results})
    (dest / "options.json").write_text(json.dumps(data, indent=1, ensure_ascii=False))

    head = ["variant", *langs, "seen avg", "unseen", "low-res", "non-en avg"]
    lines = ["# Bridge options in the mini-world (issue 8)", "",
             f"English-answer accuracy (%) of the LLM through the bridge (`xbridge-encoder-only`, `tgt_lang=None`) on the "
             f"world's 100 held-out problems per language. Every variant: stage 1 ({SCHEDULE.stage1} steps) from the "
             f"world's bases, then stage 2 ({SCHEDULE.stage2} steps), batch {SCHEDULE.batch}, lr {SCHEDULE.lr}, "
             f"cosine, warmup {SCHEDULE.warmup}, the main job's flags otherwise (a shorter schedule than the main table, "
             f"so compare rows with each other only). Seen = {', '.join(g['seen'])} (high-resource); unseen = "
             f"{g['unseen'][0]} (never in any XBridge stage); low-resource = {g['low_resource'][0]} (10% of the data).",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        acc = row["accuracy"]
        cells = [name] + [f"{acc[lang]:.0f}" if lang in acc else "-" for lang in langs]
        cells += [f"{row[k]:.1f}" if row[k] is not None else "-" for k in ("seen_avg", "unseen_avg", "low_resource_avg", "non_english_avg")]
        lines.append("| " + " | ".join(cells) + " |")
    refs = reference_rows()
    if refs:
        lines += ["", "Reference rows from the main job (its own, longer schedule; context only, not part of the comparison):", "",
                  "| " + " | ".join(["system", *head[1:]]) + " |", "|" + "---|" * len(head)]
        for name, acc in refs.items():
            cells = [name] + [f"{acc[lang]:.0f}" if lang in acc else "-" for lang in langs]
            cells += [f"{v:.1f}" if v is not None else "-" for v in (_avg(acc, g["seen"]), _avg(acc, g["unseen"]),
                      _avg(acc, g["low_resource"]), _avg(acc, [lang for lang in langs if lang != "en"]))]
            lines.append("| " + " | ".join(cells) + " |")
        data["reference_rows"] = refs
        (dest / "options.json").write_text(json.dumps(data, indent=1, ensure_ascii=False))
    if rows:
        ranked = sorted(rows, key=lambda n: rows[n]["non_english_avg"] or 0, reverse=True)
        best, ref = ranked[0], rows.get("last")
        n_x = len(langs) - 1
        # standard error of a difference of two non-English averages over n_x * 100 problems each
        p_ = (rows[best]["non_english_avg"] or 0) / 100
        se = 100 * (2 * p_ * (1 - p_) / (n_x * 100)) ** 0.5
        lines += ["", "Ranking by non-English average: " + " > ".join(f"{n} ({rows[n]['non_english_avg']:.1f})" for n in ranked)
                  + "."]
        if ref is not None and best != "last":
            gap = rows[best]["non_english_avg"] - ref["non_english_avg"]
            lines.append(f"{best} vs last: {gap:+.1f} points on the non-English average (standard error of that "
                         f"difference about {se:.1f} points, so {gap / se:.1f} SE).")
    lines += ["", "Noise: 100 problems per language, so one cell's binomial standard error is about 3 points at 10-15% "
              "accuracy and 5 points at 40% (about 1.6 points for the 4-language seen average); differences smaller "
              "than that are not evidence."]
    lines += ["", "Variants:"] + [f"- **{n}**: {VARIANTS[n][0]}" for n in VARIANTS]
    if missing:
        lines += ["", f"Not finished in the time budget: {', '.join(missing)}."]
    lines += ["", "## Learned layer weights", "", "![layer weights](options_layer_weights.png)", ""]
    for name, w in weights.items():
        lines.append(f"- {name} (emb, layer 1..N): " + ", ".join(f"{x:.3f}" for x in w["all"]))
        for lang, lw in w.get("per_language", {}).items():
            lines.append(f"  - {lang}: " + ", ".join(f"{x:.3f}" for x in lw))
    lines += ["", "## Timings (s, 2 lanes on a shared 2-core CPU)", "", "| variant | stage 1 | stage 2 | eval |", "|---|---|---|---|"]
    for name, t in timings.items():
        lines.append(f"| {name} | {t['stage1_s']} | {t['stage2_s']} | {t['eval_s']} |")
    lines += ["", f"Wall clock: {wall:.0f} s. Runs under `{out}`; rerun with `python -m miniworld.options`.", ""]
    (dest / "options.md").write_text("\n".join(lines))
    if weights:
        plot_layer_weights(weights, dest / "options_layer_weights.png")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniworld.options", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/miniworld/options")
    parser.add_argument("--results", default="results/miniworld")
    parser.add_argument("--lanes", type=int, default=2, help="variants trained side by side (one thread each)")
    args = parser.parse_args(argv)
    out, dest = Path(args.out), Path(args.results)
    out.mkdir(parents=True, exist_ok=True)

    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    t0 = time.time()
    stage1_ready = {name: threading.Event() for name in VARIANTS}
    timings: dict = {}
    results: dict = {}
    lock = threading.Lock()

    def job(name):
        try:
            res = run_variant(name, out, stage1_ready, timings)
        except Exception as exc:  # one failing variant must not lose the others
            log(f"{name}: FAILED: {exc!r}")
            stage1_ready[name].set()
            return
        with lock:  # the table grows as variants finish
            results[name] = res
            write_report(results, {}, timings, out, dest, time.time() - t0, [n for n in VARIANTS if n not in results])

    log(f"{len(VARIANTS)} variants, {args.lanes} lanes, schedule stage1={SCHEDULE.stage1} stage2={SCHEDULE.stage2}")
    with ThreadPoolExecutor(max_workers=max(1, args.lanes)) as pool:
        list(pool.map(job, VARIANTS))
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    log("layer weights")
    weights = layer_weights(results)
    missing = [n for n in VARIANTS if n not in results]
    wall_file, wall = out / "wall.json", time.time() - t0
    if wall_file.exists() and wall < 120:  # a re-run that reused everything: report the first run's wall clock
        wall = json.loads(wall_file.read_text())["wall_s"]
    else:
        wall_file.write_text(json.dumps(dict(wall_s=round(wall, 1))))
    data = write_report(results, weights, timings, out, dest, wall, missing)
    log(f"wrote {dest / 'options.md'} ({time.time() - t0:.0f}s)")
    print((dest / "options.md").read_text(), flush=True)
    return 0 if not missing and data else 1


if __name__ == "__main__":
    raise SystemExit(main())
