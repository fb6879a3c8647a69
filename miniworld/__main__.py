"""`python -m miniworld [--fast] [--out runs/miniworld] [--results results/miniworld]`: the main job.

generate the world -> pretrain both bases -> evaluate the bases -> three XBridge stages -> evaluate every
system -> write results (markdown, JSON, PNG). Finished steps are reused on a re-run.
`python -m miniworld ablation [...]`: the ablation table (needs the main job's bases; builds them if absent).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from .pipeline import Plan, Timer, cpu_seconds, step_base_eval, step_bases, step_generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miniworld", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="all", choices=["all", "bases", "ablation"],
                        help="all (default): the whole main job; bases: stop after the base models and their eval; "
                             "ablation: the ablation table")
    parser.add_argument("--fast", action="store_true", help="the CI variant: smaller world, fewer steps")
    parser.add_argument("--out", default=None, help="work folder (default runs/miniworld or runs/miniworld-fast)")
    parser.add_argument("--results", default=None, help="where tables/plots go (default results/miniworld[-fast])")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    suffix = "-fast" if args.fast else ""
    plan = Plan.make(args.out or f"runs/miniworld{suffix}", fast=args.fast)
    results = args.results or f"results/miniworld{suffix}"
    from pathlib import Path  # noqa: PLC0415

    results = Path(results)
    # the ablation may run beside the main job on the same folder: its own timings file
    timer = Timer(plan.out, "timings-ablation.json" if args.command == "ablation" else "timings.json")
    t0 = time.time()
    timer.run("generate", step_generate, plan)
    step_bases(plan, timer)
    base = step_base_eval(plan, timer, results)
    print(f"English LLM accuracy: {base['llm']['accuracy']:.1f}%  NMT chrF min over pairs: {base['nmt']['min_chrf']:.1f}")
    if args.command == "bases":
        print(f"done in {time.time() - t0:.0f}s; see {results}/base_models.md")
        return 0
    from .stages import run_ablation, run_main  # noqa: PLC0415  (phase B: needs train/ and eval/)

    if args.command == "ablation":
        run_ablation(plan, timer, results)
    else:
        run_main(plan, timer, results)
    timer.times[f"{args.command}_cpu_seconds"] = round(cpu_seconds(), 1)
    timer.times[f"{args.command}_wall_seconds"] = round(time.time() - t0, 1)
    timer.path.write_text(json.dumps(timer.times, indent=1))
    print(f"done in {time.time() - t0:.0f}s wall, {cpu_seconds():.0f}s CPU; see {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
