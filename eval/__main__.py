"""`python -m eval BENCHMARK --system S --model M ...` runs and scores; `python -m eval report OUT... --output F`."""

import argparse
import sys

from . import data, languages
from .systems import SYSTEMS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__)
    commands = "{" + ",".join([*data.BENCHMARKS, "report"]) + "}"
    sub = parser.add_subparsers(dest="command", required=True, metavar=commands)
    for name in data.BENCHMARKS:
        p = sub.add_parser(name, help=f"run and score {name}")
        p.add_argument("--system", required=True, choices=list(SYSTEMS))
        p.add_argument("--model", help="XBridge checkpoint (folder or Hub id); for baselines also a plain LLM/NLLB "
                                       "or an XBridge checkpoint whose bases they use")
        p.add_argument("--nmt", help="NLLB model for translate-test / nmt (default: the bridge's)")
        p.add_argument("--llm", help="LLM for direct / translate-test / sft base (default: the bridge's)")
        p.add_argument("--langs", default=",".join(languages.PAPER_LANGS),
                       help="comma-separated short (sw) or NLLB (swh_Latn) codes")
        p.add_argument("--directions", help="translation directions, comma-separated from "
                                            f"{','.join(data.DIRECTIONS)} (default: all the system can do)")
        p.add_argument("--data", dest="source", help="local folder or Hub dataset id (default: vendored data/; "
                                                     "XL-Sum: csebuetnlp/xlsum)")
        p.add_argument("--limit", type=int, help="first N examples per language/direction")
        p.add_argument("--batch_size", type=int, default=8)
        p.add_argument("--max_new_tokens", type=int, help="generation length (default per task: 128 translate/"
                                                          "summaries, 256 math)")
        p.add_argument("--instruction", help="task instruction for the LLM prompt (overrides the defaults)")
        p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
        p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16 ...")
        p.add_argument("--engine", default="transformers", choices=["transformers", "ctranslate2"],
                       help="NLLB engine of the systems that only translate with it (nmt, translate-test): "
                            "transformers generate(), or CTranslate2 (pip install \"xbridge[fast]\"; the checkpoint "
                            "is converted once, next to it)")
        p.add_argument("--compute_type", default="default",
                       help="ctranslate2: float32, int8, int8_float16, bfloat16, ... as the device allows "
                            "(default: float32 on CPU, bfloat16/float16 on GPU)")
        p.add_argument("--comet_model", default="Unbabel/wmt22-comet-da",
                       help="COMET model (used only when unbabel-comet and the model are available offline)")
        p.add_argument("--output_dir", required=True)
    p = sub.add_parser("report", help="markdown table + PNG charts from saved scores")
    p.add_argument("runs", nargs="+", help="output folders (searched for scores.json) or scores.json files")
    p.add_argument("--output", required=True, help="markdown file; charts are written beside it")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "report":
            from .report import build_report

            for path in build_report(args.runs, args.output):
                print(path)
            return 0
        from .runner import run

        scores = run(
            args.command, args.system, languages.parse_langs(args.langs), args.output_dir, model=args.model,
            nmt=args.nmt, llm=args.llm, limit=args.limit, batch_size=args.batch_size, source=args.source,
            directions=args.directions.split(",") if args.directions else None, device=args.device,
            dtype=args.dtype, instruction=args.instruction, comet_model=args.comet_model, engine=args.engine,
            compute_type=args.compute_type,
            # one limit for every generation step (translate-test's question translation included)
            max_new_tokens=dict.fromkeys(("translate", "math", "summarize"), args.max_new_tokens)
            if args.max_new_tokens else None,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for row in scores["scores"]:
        print(f"{row['task']:>9} {row['lang']:>6} {row['metric']:>8} {row['value']:7.2f}  (n={row['n']})")
    for note in scores["notes"]:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
