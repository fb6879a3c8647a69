"""python -m bench [--quick] [--scale tiny|real|all] [--out results/bench] [--threads N]"""

import argparse
import gc
import shlex
import sys
import time
from pathlib import Path

import torch

from . import common
from .report import write_all

# Sizes per mode. Real-size runs are scaled down from the paper's (hundreds of tokens, large batches) so a
# 2-core CPU finishes them; every comparison inside one scale uses the same inputs and forced lengths.
PLANS = {
    "quick": dict(gen=dict(src=10, prompt=6, english=6, target=6), batches=(1, 16), ks=dict(batch=1, values=(1, 2, 4, 8), repeats=1, warmup=0),
                  train_batch=2, train=dict(src=8, answer=8, target=8, ot_target=8), ot_long=dict(B=2, Lx=48, Ly=64),
                  repeats=1, warmup=0),
    "tiny": dict(gen=dict(src=24, prompt=12, english=24, target=24), batches=(1, 16),
                 ks=dict(batch=1, values=(1, 2, 4, 8), repeats=5, warmup=1),
                 train_batch=8, train=dict(src=32, answer=32, target=32, ot_target=32), ot_long=dict(B=4, Lx=384, Ly=512),
                 repeats=5, warmup=1),
    "real": dict(gen=dict(src=24, prompt=8, english=16, target=16), batches=(1, 16),
                 ks=dict(batch=1, values=(1, 2, 4, 8), repeats=2, warmup=0),
                 train_batch=4, train=dict(src=32, answer=32, target=32, ot_target=32), ot_long=dict(B=4, Lx=384, Ly=512),
                 repeats=3, warmup=1),
}

NOTES = Path(__file__).resolve().parent / "NOTES.md"


def log(msg):
    print(msg, flush=True)


def run_scale(scale: str, plan: dict, dtypes: dict, results: dict) -> dict:
    from .generation import run_generation
    from .size import saved_bridge_bytes
    from .training import run_training

    out = {}
    log(f"[{scale}] building the model ({dtypes['generation']})")
    model = common.build_model("tiny" if scale in ("tiny", "quick") else "real", dtypes["generation"])
    out["generation"] = run_generation(model, scale, plan["batches"], plan["gen"], plan["repeats"], plan["ks"], log)
    if scale == "real":
        results["saved_bridge_bytes"] = saved_bridge_bytes(model)
    model.to(dtypes["training"])
    out["training"] = run_training(model, scale, plan["train_batch"], plan["train"], plan["repeats"], plan["ot_long"], log)
    del model
    gc.collect()
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny scale, 1 repeat, small sizes (CI smoke test)")
    parser.add_argument("--scale", choices=("tiny", "real", "all"), default=None, help="default: all, or tiny with --quick")
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the machine has 2 shared cores)")
    parser.add_argument("--notes", default=str(NOTES), help="markdown appended to bench.md (gap explanations)")
    parser.add_argument("--part", choices=("all", "core", "throughput", "quant", "memory"), default="all",
                        help="core: bench.md (generation, training step, OT, sizes); throughput: throughput.md "
                             "(issue 15: padding, length grouping, NLLB engines, build-data, Translate-Test); quant: "
                             "quant.md (int8 frozen bases against float32 on the real bridge); memory: memory.md "
                             "(will it fit? peak memory per GPU at real shapes); quant and memory are not in 'all'")
    parser.add_argument("--sentences", type=int, default=64, help="quant: FLORES devtest sentences per direction")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    scales = ["quick"] if args.quick else (["tiny", "real"] if args.scale in (None, "all") else [args.scale])
    if args.quick and args.scale == "real":
        parser.error("--quick runs the tiny scale only")
    results = {"command": "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
               "machine": common.machine(), "bf16_probe": common.bf16_probe(repeats=1 if args.quick else 5), "scales": {}}
    probe = results["bf16_probe"]
    # bf16 only where this CPU actually runs it faster: decode matmuls are (batch x d), training ones (tokens x d).
    results["dtypes"] = {
        "generation": "bfloat16" if min(probe["M=1"]["bf16_speedup"], probe["M=16"]["bf16_speedup"]) > 1 else "float32",
        "training": "bfloat16" if probe["M=512"]["bf16_speedup"] > 1.2 else "float32",
    }
    dtypes = {k: getattr(torch, v) for k, v in results["dtypes"].items()}
    log(f"machine: {results['machine']}\nbf16 probe: {probe}\ndtypes: {results['dtypes']}")
    if args.part == "memory":
        from .memory import run_memory, write_report as write_memory

        log("memory model (issue 33)")
        result = run_memory(log)
        files = write_memory(result, Path(args.out), results["machine"], results["command"])
        log(f"wrote {', '.join(files)} to {args.out}")
        print((Path(args.out) / "memory.md").read_text())
        return result
    if args.part == "quant":
        from .quant import run_quant, write_report as write_quant

        log("int8 bases against float32 (issue 33)")
        result = run_quant(args.sentences, log)
        files = write_quant(result, Path(args.out), results["machine"], results["command"])
        log(f"wrote {', '.join(files)} to {args.out}")
        return result
    if args.part in ("all", "throughput"):
        from .throughput import run_throughput, write_report

        log("throughput (issue 15)")
        common.WARMUP = 0 if args.quick else 1
        results["throughput"] = run_throughput("quick" if args.quick else "full", args.threads, log)
        results["throughput"].update(machine=results["machine"], command=results["command"])
        files = write_report(results["throughput"], Path(args.out), results["machine"], results["command"])
        log(f"wrote {', '.join(files)} to {args.out}")
        if args.part == "throughput":
            return results
    for scale in scales:
        common.WARMUP = PLANS[scale]["warmup"]
        results["scales"][scale] = run_scale(scale, PLANS[scale], dtypes, results)
    results.pop("throughput", None)  # in throughput.json
    if not args.quick:
        from .size import all_sizes

        results["sizes"] = all_sizes()
    results["load_average_end"] = common.load_average()
    results["wall_s"] = time.time() - started
    notes = Path(args.notes).read_text(encoding="utf-8") if args.notes and Path(args.notes).exists() else ""
    files = write_all(results, Path(args.out), notes)
    log(f"wrote {', '.join(files)} to {args.out} in {results['wall_s']:.0f} s")
    return results


if __name__ == "__main__":
    main()
