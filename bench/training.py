"""Stage-1 training step (LLM CE + decoder CE + OT) and the OT call alone: time, memory, OT share."""

import time

import torch

from train.ot import build_ot_loss

from .common import ENGLISH, LANGS, TensorMemoryTracker, llm_tokens, nmt_sentence, timeit


def make_train_batch(model, B: int, lengths: dict, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    src = nmt_sentence(model, B, lengths["src"], LANGS[0], g)
    answer = llm_tokens(model, B, lengths["answer"], g)
    labels = nmt_sentence(model, B, lengths["target"], LANGS[0], g)  # `[tgt_code, y..., </s>]`
    ot_target = nmt_sentence(model, B, lengths["ot_target"], ENGLISH, g)  # the English answer in NLLB ids
    return dict(input_ids=src, attention_mask=torch.ones_like(src), answer_ids=answer,
                answer_attention_mask=torch.ones_like(answer), labels=labels, ot_target_ids=ot_target,
                ot_target_attention_mask=torch.ones_like(ot_target))


class TimedOT:
    """Wraps the OT function: times its forward inside the step and keeps the last inputs for the solo runs."""

    def __init__(self, fn):
        self.fn, self.forward_s, self.last = fn, [], None

    def __call__(self, x, x_mask, y, y_mask):
        start = time.perf_counter()
        loss = self.fn(x, x_mask, y, y_mask)
        self.forward_s.append(time.perf_counter() - start)
        self.last = (x.detach(), x_mask, y.detach(), y_mask)
        return loss


def ot_alone(fn, x, x_mask, y, y_mask, repeats: int) -> dict:
    """Forward + backward of the OT loss alone: time, and its tensor memory against the (B, Lx, Ly) cost.

    `pairwise_bytes`: peak of the tensors with both an Lx and an Ly axis (what grows with Lx * Ly); the rest
    of the peak is linear in the lengths (copies of x, y and y's gradient). A (B, Lx, Ly, d) tensor would be
    both pairwise and the largest tensor.
    """
    y = y.detach().requires_grad_(True)

    def step():
        fn(x, x_mask, y, y_mask).backward()
        y.grad = None

    timing = timeit(step, repeats)
    B, Lx, d = x.shape
    Ly = y.shape[1]
    with TensorMemoryTracker(pair=(Lx, Ly)) as mem:
        step()
    cost = B * Lx * Ly * 4
    return {
        "shape": {"B": B, "Lx": Lx, "Ly": Ly, "d": d},
        "fwd_bwd_s": timing["median_s"],
        "peak_bytes": mem.peak,
        "pairwise_bytes": mem.pair_peak,
        "largest_tensor_bytes": mem.largest,
        "largest_tensor_shape": list(mem.largest_shape or ()),
        "cost_matrix_bytes": cost,
        "inputs_bytes": (x.numel() + y.numel()) * 4,
        "peak_over_cost": mem.peak / cost,
        "pairwise_over_cost": mem.pair_peak / cost,
        "no_4d_tensor": mem.largest < cost * d and mem.largest <= max(cost, max(x.numel(), y.numel()) * 4),
        "pairwise_within_2x_cost": mem.pair_peak <= 2 * cost,
    }


def run_training(model, scale: str, B: int, lengths: dict, repeats: int, ot_long: dict, log=print) -> dict:
    """One stage-1 step per OT variant: tokens/s, peak tensor memory of the step, share of the step in OT."""
    model.set_stage(1)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    batch = make_train_batch(model, B, lengths)
    tokens = sum(v.numel() for k, v in batch.items() if k in ("input_ids", "answer_ids", "labels", "ot_target_ids"))
    results = {"batch": B, "lengths": lengths, "tokens_per_step": tokens, "trainable_params": sum(p.numel() for p in params),
               "dtype": str(next(model.llm.parameters()).dtype).replace("torch.", ""), "ot": {}}
    for name in ("relaxed", "sinkhorn"):
        ot = TimedOT(build_ot_loss(name))
        model.set_ot_loss(ot)

        def step():
            optimizer.zero_grad(set_to_none=True)
            out = model(**batch)
            assert out.loss_llm is not None and out.loss_dec is not None and out.loss_ot is not None
            out.loss.backward()
            optimizer.step()

        timing = timeit(step, repeats)
        ot.forward_s.clear()
        with TensorMemoryTracker() as mem:
            step()
        solo = ot_alone(ot.fn, *ot.last, repeats=max(repeats, 3))
        g = torch.Generator().manual_seed(1)
        long_x = torch.randn(ot_long["B"], ot_long["Lx"], ot.last[0].shape[-1], generator=g)
        long_y = torch.randn(ot_long["B"], ot_long["Ly"], ot.last[0].shape[-1], generator=g)
        long = ot_alone(ot.fn, long_x, None, long_y, None, repeats=1)
        row = {
            "step_s": timing["median_s"],
            "step_cpu_runs_s": timing["cpu_runs_s"],
            "step_wall_s": timing["wall_median_s"],
            "tokens_per_s": tokens / timing["median_s"],
            "step_peak_tensor_bytes": mem.peak,
            "ot_forward_in_step_s": ot.forward_s[0] if ot.forward_s else None,
            "ot_alone": solo,
            "ot_share": solo["fwd_bwd_s"] / timing["median_s"],
            "ot_long_shapes": long,
        }
        results["ot"][name] = row
        log(f"  [{scale}] train {name}: step {row['step_s']:.3f}s, {row['tokens_per_s']:.0f} tok/s, "
            f"OT share {row['ot_share']:.2%}, step peak {mem.peak / 2**20:.0f} MiB, "
            f"OT pairwise memory / cost {solo['pairwise_over_cost']:.1f} (long: {long['pairwise_over_cost']:.1f})")
    model.set_ot_loss(None)
    model.set_stage(None)
    model.eval()
    return results
