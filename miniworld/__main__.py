"""`python -m miniworld [all|general|bases|ablation|sweep|paper|publish] [--fast] [--seeds 0 1 2] [--workers N]`

- all (default), the main job: from the shipped bases (as a user starts from NLLB-200 and an LLM), the three
  XBridge stages and the encoder-only baseline with every seed, every system evaluated through eval/, results
  (markdown with intervals, JSON, PNG) in results/miniworld/. `--fast`: the CI variant (fewer steps, three
  languages, 40 problems, one seed).
- general: the main job in the general world (issue 13), on the general LLM `--llm llama|qwen2|gemma|all`: math,
  summaries (XL-Sum's shape) and translation (Table 1) for every system, the harness's task instructions; results
  in results/miniworld/general/<llm>/.
- bases: pretrain both bases from scratch and compare them with the shipped ones (metrics side by side, and
  whether the weights are identical bit for bit; `--what`: only these bases). `--general`: the general world's bases instead (an NMT that also
  knows stories and summaries, and general English LLMs of three families: Llama, Qwen2, Gemma).
- ablation: every ablation row with the same seeds over the shipped bases (results/miniworld/ablation.md);
  `--general --llm <family>`: in the general world, on math, summaries and translation (the paper's Figure 4;
  results/miniworld/general/<llm>/ablation.md).
- sweep: the NMT-quality sweep in the general world on `--llm`: one more NMT trained on a share of some languages'
  translation pairs (100/10/3/1%), translate-test and XBridge (every seed) over it, scores against the NMT's own
  chrF++ (results/miniworld/general/<llm>/sweep/).
- paper: the whole report of the general world in one pool of jobs: `general --llm all`, the ablation (Figure 4)
  and the sweep on the first LLM (llama), then the overview.
- publish: ship this run's bases (`--what nmt llm`; the general ones: `--what nmt-general llm-llama llm-qwen2
  llm-gemma`) or seed-0 bridge (`--what bridge`) as the package's checkpoints.

Every job runs with one thread, set once at its start; jobs run side by side (`--workers`, default: the core
count), which changes only the wall time, never a number. Finished steps are reused on a re-run.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path


def general_folders(llm: str, suffix: str) -> tuple[str, str]:
    """(run folder, results folder) of one LLM's general-world main job (its ablation trains inside the run folder)."""
    return f"runs/miniworld-general{suffix}/{llm}", f"results/miniworld{suffix}/general/{llm}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniworld", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="all", choices=["all", "general", "bases", "ablation", "sweep", "paper", "publish"])
    parser.add_argument("--fast", action="store_true", help="the CI variant: fewer steps, languages and problems")
    parser.add_argument("--out", default=None, help="work folder (default runs/miniworld[-fast]; bases: runs/miniworld-bases)")
    parser.add_argument("--results", default=None, help="where tables/plots go (default results/miniworld[-fast])")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="training seeds of every trained system (default 0 1 2; --fast: 0)")
    parser.add_argument("--workers", type=int, default=None, help="jobs side by side (default: the core count)")
    parser.add_argument("--general", action="store_true",
                        help="bases: the general world's (the NMT with stories, LLMs of three families); ablation: "
                             "in the general world on `--llm`, scored on every task family")
    parser.add_argument("--llm", default="llama", choices=["llama", "qwen2", "gemma", "all"],
                        help="general: which general LLM the bridge joins (all: each in turn, then the overview "
                             "with one column group per LLM)")
    parser.add_argument("--bases-from", default=None,
                        help="general: take the bases from this `bases --general` run folder instead of the shipped ones")
    parser.add_argument("--what", nargs="+", default=None,
                        choices=["nmt", "llm", "bridge", "nmt-general", "llm-llama", "llm-qwen2", "llm-gemma"],
                        help="publish: which checkpoints to ship from this run (default: nmt llm); bases: which bases "
                             "to rebuild (default: all of the world's; the report keeps the others' last rows)")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers {args.workers}: give 1 or more")
    if args.bases_from and args.command != "general":
        parser.error(f"--bases-from {args.bases_from}: only the `general` command takes its bases from a run folder")
    if args.command == "sweep" and args.fast:
        parser.error("sweep --fast: the sweep trains a full-size NMT; it has no CI variant (its report is unit-tested)")
    if args.what and args.command not in ("bases", "publish"):
        parser.error(f"--what {' '.join(args.what)}: only `bases` and `publish` take it")
    args.what = args.what or (["nmt", "llm"] if args.command == "publish" else None)
    if args.llm == "all" and args.command not in ("general", "paper"):
        parser.error(f"--llm all: only the `general` command runs every LLM (`{args.command}` takes one)")

    import torch  # noqa: PLC0415

    from .jobs import THREADS_PER_JOB  # noqa: PLC0415
    from .pipeline import Plan, main_job, publish_checkpoints, rebuild_bases  # noqa: PLC0415

    torch.set_num_threads(THREADS_PER_JOB)  # this process's own compute (reports) uses the jobs' thread count
    shipping_bases = args.command == "publish" and "bridge" not in args.what
    if args.command == "publish" and "bridge" in args.what and len(args.what) > 1:
        parser.error(f"--what {' '.join(args.what)}: publish the bases (from a `bases` run) and the bridge (from a "
                     "main job) in two calls")
    suffix = "-fast" if args.fast else ""
    # `bases` rebuilds in a folder of its own, so it never reuses the bases a main job might have left
    bases_run = args.command == "bases" or shipping_bases
    out = args.out or (f"runs/miniworld-bases{suffix}" if bases_run else f"runs/miniworld{suffix}")
    if shipping_bases and any(kind not in ("nmt", "llm") for kind in args.what):
        out = args.out or f"runs/miniworld-bases{suffix}-general"  # where `bases --general` trained them
    results = args.results or ("results/miniworld-bases-fast" if bases_run and args.fast else f"results/miniworld{suffix}")
    if args.command == "paper" or (args.command == "general" and args.llm == "all"):
        if args.out or args.results or args.bases_from:
            parser.error(f"`{args.command}{' --llm all' if args.command == 'general' else ''}` writes every LLM's "
                         "default folders: run one LLM at a time with --out/--results/--bases-from")
        from .bases import LLM_FAMILIES  # noqa: PLC0415
        from .pipeline import main_job_parts, run_parts  # noqa: PLC0415
        from .report import write_general_overview  # noqa: PLC0415

        plans = {llm: Plan.make(*general_folders(llm, suffix), args.fast, tuple(args.seeds) if args.seeds else None,
                                general=True, llm=llm) for llm in LLM_FAMILIES}
        parts = {llm: (lambda plan=plan: main_job_parts(plan)) for llm, plan in plans.items()}
        if args.command == "paper":  # Figure 4 and the NMT sweep on the first LLM, after its main report (the sweep reads it)
            from .ablation import ablation_parts  # noqa: PLC0415
            from .sweep import sweep_parts, sweep_plan  # noqa: PLC0415

            first = plans[next(iter(LLM_FAMILIES))]
            parts["ablation"] = lambda: ablation_parts(first)
            parts["sweep"] = lambda: sweep_parts(sweep_plan(first), first.results)
        first_plan = next(iter(plans.values()))
        root = first_plan.results.parent  # every LLM's results folder lies in the overview's
        run_parts(parts, root, "all" if args.command == "general" else "paper", args.workers, first_plan.kernels)
        write_general_overview(root, list(LLM_FAMILIES))
        print(f"see {root / 'README.md'}")
        return 0
    general = args.command in ("general", "sweep") or (args.command == "ablation" and args.general)
    if general:  # one folder and one results folder per LLM (its ablation trains in a subfolder of the same run)
        default_out, default_results = general_folders(args.llm, suffix)
        out, results = args.out or default_out, args.results or default_results
    plan = Plan.make(out, results, args.fast, tuple(args.seeds) if args.seeds else None, general=general, llm=args.llm)
    if args.bases_from:
        folder = Path(args.bases_from) / "bases"
        plan = replace(plan, bases=(str(folder / "nmt-general"), str(folder / f"llm-{args.llm}")))
    if args.command == "sweep":  # beside the LLM's main job, whose results give every language's 100% point
        from .sweep import sweep_plan  # noqa: PLC0415

        main_results = plan.results
        plan = replace(sweep_plan(plan), **{k: Path(v) for k, v in (("out", args.out), ("results", args.results)) if v})
    if args.command == "bases":
        from .bases import FIRST_BASES, GENERAL_BASES, BaseConfig  # noqa: PLC0415
        from .world import WorldConfig  # noqa: PLC0415

        kinds = GENERAL_BASES if args.general else FIRST_BASES
        if args.what:
            if not set(args.what) <= set(kinds):
                parser.error(f"bases{' --general' if args.general else ''} --what {' '.join(args.what)}: this world's "
                             f"bases are {', '.join(kinds)}")
            kinds = tuple(args.what)
        if args.general and not args.out:
            plan = replace(plan, out=Path(f"{plan.out}-general"))
        if args.fast:  # the quick check: a small world, a few steps (the shipped bases come from the full command)
            comparison = rebuild_bases(replace(plan, world=WorldConfig.fast()), BaseConfig.fast(), args.workers,
                                       compare=False, kinds=kinds)
        else:
            comparison = rebuild_bases(plan, BaseConfig.general() if args.general else None, args.workers, kinds=kinds)
        report = "base_models_general.md" if args.general else "base_models.md"
        print(f"see {plan.results / report}: " + "; ".join(
            f"{kind}: " + ("no shipped one" if same is None else "identical bit for bit" if same["identical"]
                           else f"differs (max |diff| {same['max_abs_diff']:.3g})")
            for kind, same in comparison["identical"].items() if kind not in comparison.get("from_last_report", ())))
    elif args.command == "publish":
        publish_checkpoints(plan, tuple(args.what))
        print(f"shipped {args.what} into miniworld/checkpoints/")
    elif args.command == "ablation":
        from .ablation import run_ablation  # noqa: PLC0415

        run_ablation(plan, workers=args.workers)
        print(f"see {plan.results / 'ablation.md'}")
    elif args.command == "sweep":
        from .sweep import run_sweep  # noqa: PLC0415

        run_sweep(plan, main_results, workers=args.workers)
        print(f"see {plan.results / 'README.md'}")
    else:
        main_job(plan, workers=args.workers)
        print(f"see {plan.results / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
