"""The bridge options in the mini-world (issue 8), with seeds and intervals.

`python -m miniworld.options [--seeds 0 1 2] [--workers N] [--out runs/miniworld/options] [--results results/miniworld]`

Five encoder-side variants, each trained with ONE reduced schedule (the main job's stage flags, fewer steps) on the
shipped bases, with every seed: stage 1, then stage 2 on the task data; evaluated through eval/ as
`xbridge-encoder-only` (the LLM's English answer, `tgt_lang=None`; stage 3 is not needed for it).

  1. last            - the paper: last NLLB encoder layer, full stage-2 data
  2. global_softmax  - one learned softmax weight per encoder layer (embeddings included)
  3. token_softmax   - per-token layer weights from a one-layer transformer over the layer stack
  4. last + align    - stage 1 with the AlignX-style terms (lambda_align 0.3, lambda_lang 0.4)
  5. last, English-only stage 2 - variant 1's stage 1, stage 2 on the English task records only (zero-shot on
                       the other languages)

Writes `options.md` (variant x language with intervals, and each variant minus `last`, paired), `options.json`
and `options_layer_weights.png` (the learned fusion weights, seed 0). Jobs run side by side with one thread each
(jobs.py); finished runs are reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import experiments, shipped
from .bridge import StageSchedule, common_flags, train
from .evaluate import evaluate, register_languages
from .jobs import Job, Stopwatch, run_jobs
from .pipeline import Plan, step_generate, write_run_info
from .runs import is_done, mark_data_done, read_jsonl, write_jsonl
from .report import AVG, claims_vs, estimates_dict, math_estimates, table
from .world import ENGLISH, short_code

# One schedule for every variant and the variants themselves: miniworld/configs/options.yaml.
SCHEDULE = experiments.section("options", "schedule", cls=StageSchedule)
REFERENCE = experiments.load("options", "reference")
VARIANTS = {
    # name: (description, stage-1 extra flags, stage-2 data ("full" | "english"), stage 1 shared with)
    name: (row["description"], list(row["stage1_flags"]), row["stage2_data"], row.get("shares_stage1"))
    for name, row in experiments.load("options", "variants").items()
}


def folder_name(name: str) -> str:
    return name.replace(", ", "-").replace(" + ", "-").replace(" ", "-")


def english_only_file(world: Path, out: Path) -> Path:
    """Stage-2 task records whose source is English, written once into a data folder of the out folder."""
    folder = out / "english-only-data"
    if not is_done(folder):
        write_jsonl(folder / "task.jsonl", [r for r in read_jsonl(world / "task.jsonl") if r["src_lang"] == ENGLISH])
        mark_data_done(folder, {})
    return folder / "task.jsonl"


def variant_jobs(plan: Plan, name: str, seed: int) -> list[Job]:
    """Stage 1 (unless shared), stage 2 and the evaluation of one variant and seed."""
    _, s1_extra, data, shared = VARIANTS[name]
    world, root = plan.world_dir, plan.out / f"seed{seed}"
    bases = ["--nmt_name_or_path", shipped.checkpoint("nmt"), "--llm_name_or_path", shipped.checkpoint("llm")]
    jobs = []
    s1 = root / folder_name(shared or name) / "stage1"
    if shared is None:
        jobs.append(Job(f"{name}/s{seed}/stage1", train, (str(s1), ["train", "stage1", "--config", "train/configs/stage1.yaml"],
                        common_flags(SCHEDULE, SCHEDULE.stage1, s1, world / "stage1.jsonl", seed) + bases
                        + ["--ot_backend", "relaxed"] + s1_extra), cost=SCHEDULE.stage1 * 0.7))
    s2 = root / folder_name(name) / "stage2"
    train_file = world / "task.jsonl" if data == "full" else english_only_file(world, plan.out)
    jobs.append(Job(f"{name}/s{seed}", train, (str(s2), ["train", "stage2", "--config", "train/configs/stage2.yaml"],
                    common_flags(SCHEDULE, SCHEDULE.stage2, s2, train_file, seed) + ["--model_name_or_path", str(s1)]),
                    after=(f"{shared or name}/s{seed}/stage1",), cost=SCHEDULE.stage2 * 0.35))
    jobs.append(Job(f"{name}/s{seed}/eval", evaluate, ("xbridge-encoder-only", ("mgsm",), str(world),
                    str(root / folder_name(name) / "eval"), plan.eval_langs(), plan.limit, {}, False),
                    after=(f"{name}/s{seed}",), cost=15))
    return jobs


# ------------------------------------------------------------------------------------------- layer weights
def layer_weights(results: dict, world: Path) -> dict:
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
        for code in [ENGLISH, *register_languages(world)]:
            tsv = world / "test" / "mgsm" / f"mgsm_{short_code(code)}.tsv"
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
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


# ------------------------------------------------------------------------------------------------- report
def write_report(plan: Plan, rows: dict[str, list[dict]], weights: dict) -> dict:
    dest = plan.results
    dest.mkdir(parents=True, exist_ok=True)
    columns = [short_code(c) for c in plan.eval_langs()] + [AVG]
    english = {name: math_estimates(runs, "answer-en") for name, runs in rows.items()}
    diffs = [d for d in claims_vs(rows, REFERENCE) if d["task"] == "answer-en"]
    seeds = ", ".join(map(str, plan.seeds))
    lines = ["# Bridge options in the mini-world (issue 8)", "",
             f"English-answer accuracy (%) of the LLM through the bridge (`xbridge-encoder-only`, `tgt_lang=None`) on the "
             f"world's held-out problems. Every variant: the shipped bases, seeds {seeds}, stage 1 ({SCHEDULE.stage1} "
             f"steps), then stage 2 ({SCHEDULE.stage2} steps), batch {SCHEDULE.batch}, lr {SCHEDULE.lr}, the main job's "
             "flags otherwise (a shorter schedule than the main table: compare rows with each other only). Cells: mean "
             "± seed sd [95% interval over problems and seeds].", "",
             *table(english, columns, "variant"), "",
             f"## Each variant minus `{REFERENCE}`, paired over problems", "",
             "| variant | scope | difference [95%] | verdict |", "| --- | --- | --- | --- |",
             *[f"| {d['variant']} | {d['scope']} | {d['text']} | {d['verdict']} |" for d in diffs], "",
             "Variants:", "", *[f"- **{n}**: {VARIANTS[n][0]}" for n in VARIANTS], "",
             "## Learned layer weights (seed 0)", "", "![layer weights](options_layer_weights.png)", ""]
    for name, w in weights.items():
        lines.append(f"- {name} (emb, layer 1..N): " + ", ".join(f"{x:.3f}" for x in w["all"]))
    (dest / "options.md").write_text("\n".join(lines) + "\n")
    if weights:
        plot_layer_weights(weights, dest / "options_layer_weights.png")
    data = dict(seeds=list(plan.seeds), schedule=SCHEDULE.__dict__, variants={n: VARIANTS[n][0] for n in VARIANTS},
                english=estimates_dict(english), differences=diffs,
                layer_weights=weights)
    (dest / "options.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniworld.options", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/miniworld/options")
    parser.add_argument("--results", default="results/miniworld")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=None, help="jobs side by side (default: the core count)")
    args = parser.parse_args(argv)

    import torch  # noqa: PLC0415

    from .jobs import THREADS_PER_JOB  # noqa: PLC0415

    torch.set_num_threads(THREADS_PER_JOB)
    plan = Plan(Path(args.out), Path(args.results), seeds=tuple(args.seeds))
    clock = Stopwatch()
    clock.run("generate", step_generate, plan)
    jobs = [job for seed in plan.seeds for name in VARIANTS for job in variant_jobs(plan, name, seed)]
    done = clock.run("train_and_evaluate", run_jobs, jobs, args.workers, "options")
    rows = {name: [done[f"{name}/s{seed}/eval"] for seed in plan.seeds] for name in VARIANTS}
    weights = layer_weights({n: dict(model=done[f"{n}/s{plan.seeds[0]}"]) for n in ("global_softmax", "token_softmax")},
                            plan.world_dir)
    write_report(plan, rows, weights)
    write_run_info(plan.results, "options", clock.times, args.workers)
    print((plan.results / "options.md").read_text(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
