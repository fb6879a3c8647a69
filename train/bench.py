"""`python -m train.bench --nmt_name_or_path ... --llm_name_or_path ...`: step time and peak memory per stage, and
the share of a stage-1 step spent in each OT backend. One optimizer step = forward + backward + AdamW on the
stage's parameters, on a fixed synthetic batch (the numbers in train/README.md were taken with it).

Peak memory: `torch.cuda.max_memory_allocated` on GPU; on CPU the peak of live tensor memory allocated during
one step (allocations minus frees in the order the profiler saw them), on top of the weights and optimizer state.
"""

import argparse
import json
import time

import torch

from .ot import build_ot_loss
from .trainer import STAGES, XBridgeCollator, prepare_bridge_dtypes


def _records(n: int, words: int) -> tuple[list[dict], list[dict]]:
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * (words // 9 + 1)).split()[:words]
    sent = " ".join(text)
    tri = [{"src_text": sent, "src_lang": "eng_Latn", "en_text": sent, "tgt_text": sent, "tgt_lang": "eng_Latn"}] * n
    task = [{"question": sent, "src_lang": "eng_Latn", "answer_en": sent, "answer_tgt": sent,
             "tgt_lang": "eng_Latn"}] * n
    return tri, task


def _cpu_step_peak_mb(step) -> float:
    """Peak of the running sum of tensor allocations/frees during `step()` (CPU; the profiler's memory events)."""
    from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    live = peak = 0
    # Each op's own allocations (children excluded) at its start; frees are separate "[memory]" events.
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20


def measure(model, batch, steps: int, device) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    batch = {k: v.to(device) for k, v in batch.items()}
    model.train()

    def step():
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 2):  # 2 warm-up steps
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t)
    times.sort()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _cpu_step_peak_mb(step)
    return {"step_ms_median": 1000 * times[len(times) // 2], "peak_mb": peak}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m train.bench", description=__doc__)
    p.add_argument("--nmt_name_or_path", required=True)
    p.add_argument("--llm_name_or_path", required=True)
    p.add_argument("--batch_size", type=int, default=2)
    p.add_argument("--words", type=int, default=12, help="words per text field")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from modeling_xbridge import XBridgeForConditionalGeneration  # noqa: PLC0415
    from processing_xbridge import XBridgeProcessor  # noqa: PLC0415

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = XBridgeForConditionalGeneration.from_bases(args.nmt_name_or_path, args.llm_name_or_path).to(device)
    prepare_bridge_dtypes(model)
    processor = XBridgeProcessor.from_bases(args.nmt_name_or_path, args.llm_name_or_path)
    tri, task = _records(args.batch_size, args.words)
    results = {"device": str(device), "threads": torch.get_num_threads(), "batch_size": args.batch_size}
    for stage in ("stage1", "stage2", "stage3"):
        preset = STAGES[stage]
        model.set_stage(preset["model_stage"])
        model.config.lambda_llm, model.config.lambda_dec, model.config.lambda_ot = preset["lambdas"]
        model.set_ot_loss(build_ot_loss("relaxed"))
        batch = XBridgeCollator(processor, stage)(tri if stage == "stage1" else task)
        results[stage] = measure(model, batch, args.steps, device)
    # OT share of a stage-1 step, per backend: time inside the OT call (forward) / whole step.
    model.set_stage(1)
    model.config.lambda_llm, model.config.lambda_dec, model.config.lambda_ot = STAGES["stage1"]["lambdas"]
    batch = XBridgeCollator(processor, "stage1")(tri)
    for backend in ("relaxed", "sinkhorn", "sinkhorn_torch"):
        fn, spent = build_ot_loss(backend), [0.0]

        def timed(*a, fn=fn, spent=spent):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            out = fn(*a)
            if device.type == "cuda":
                torch.cuda.synchronize()
            spent[0] += time.perf_counter() - t
            return out

        model.set_ot_loss(timed)
        measure(model, batch, 1, device)  # warm-up
        spent[0] = 0.0
        r = measure(model, batch, args.steps, device)
        per_step = spent[0] / (args.steps + 2)
        results[f"ot_{backend}"] = {"step_ms_median": r["step_ms_median"], "ot_ms": 1000 * per_step,
                                    "ot_share": per_step / (r["step_ms_median"] / 1000)}
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
