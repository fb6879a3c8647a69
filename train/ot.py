"""Optimal-transport alignment loss at the LLM -> NLLB-decoder interface (paper section 3.2).

x = NLLB-encoder states of the English answer (B, Lx, d), a constant target; y = decoder-side mapped LLM
states (B, Ly, d), the thing being trained. Cost C_ij = 1 - cos(x_i, y_j). Mass on x is norm-proportional,
w_i = |x_i| / sum_k |x_k| (detached), as the paper and the released code do.

Two variants, both with the model hook's signature `fn(x, x_mask, y, y_mask) -> scalar`:
- `relaxed_ot_loss`: the released shortcut, each x_i sends all its mass to its cheapest y_j
  (per-sample `sum_i w_i min_j C_ij`, mean over samples);
- `SinkhornOTLoss`: entropic OT with both marginals (the paper's soft many-to-many plan), loss <plan, C>,
  solved in the log domain by POT's batched solver or by the pure-torch loop below.

Everything is built from one (B, Lx, Ly) cosine matrix (a batched matmul of unit vectors), never from a
(B, Lx, Ly, d) difference tensor. POT is imported lazily: it is a training dependency only and never part
of the Hub bundle.
"""

import torch

# Large finite cost for padded pairs: keeps min/logsumexp finite (no inf - inf = nan in the backward pass).
_MASKED_COST = 1e4
_EPS = 1e-8


def cosine_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """C = 1 - cos(x_i, y_j): (B, Lx, d), (B, Ly, d) -> (B, Lx, Ly), in float32 for bf16 inputs."""
    x = torch.nn.functional.normalize(x.float(), dim=-1, eps=_EPS)
    y = torch.nn.functional.normalize(y.float(), dim=-1, eps=_EPS)
    return 1.0 - torch.bmm(x, y.transpose(1, 2))  # (B, Lx, Ly)


def norm_mass(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Detached mass |h_i| / sum_k |h_k| over the unmasked positions: (B, L, d), (B, L) -> (B, L)."""
    # + eps: an all-zero state still gets a little mass, so a valid sample never has a zero marginal.
    norms = (h.detach().float().norm(dim=-1) + 1e-6) * mask  # (B, L)
    return norms / norms.sum(-1, keepdim=True).clamp_min(_EPS)


def _check(x, x_mask, y, y_mask):
    if x.dim() != 3 or y.dim() != 3 or x.shape[0] != y.shape[0] or x.shape[-1] != y.shape[-1]:
        raise ValueError(f"OT expects x (B, Lx, d) and y (B, Ly, d) with the same B and d; got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    x_mask = torch.ones(x.shape[:2], device=x.device) if x_mask is None else x_mask.to(x.device).float()
    y_mask = torch.ones(y.shape[:2], device=y.device) if y_mask is None else y_mask.to(y.device).float()
    if x_mask.shape != x.shape[:2] or y_mask.shape != y.shape[:2]:
        raise ValueError(f"OT masks must be (B, Lx) and (B, Ly); got {tuple(x_mask.shape)} and {tuple(y_mask.shape)}")
    # A sample with no valid position on either side has no transport problem: it is left out of the mean.
    valid = (x_mask.sum(-1) > 0) & (y_mask.sum(-1) > 0)  # (B,)
    return x.detach(), x_mask, y, y_mask, valid


def _mean_over_valid(per_sample: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    if not valid.any():
        return per_sample.sum() * 0.0  # keeps the graph (DDP wants every trainable parameter to get a grad)
    return per_sample[valid].mean()


def relaxed_ot_loss(x, x_mask, y, y_mask) -> torch.Tensor:
    """The released relaxed OT: mean_b sum_i w_i min_j (1 - cos(x_i, y_j)). Memory O(B * Lx * Ly)."""
    x, x_mask, y, y_mask, valid = _check(x, x_mask, y, y_mask)
    cost = cosine_cost(x, y).masked_fill(y_mask[:, None, :] == 0, _MASKED_COST)  # (B, Lx, Ly)
    row_min = cost.min(dim=-1).values  # (B, Lx)
    per_sample = (norm_mass(x, x_mask) * row_min * x_mask).sum(-1)  # (B,)
    return _mean_over_valid(per_sample, valid)


def sinkhorn_log_torch(cost, a, b, reg: float, max_iter: int, tol: float) -> torch.Tensor:
    """Entropic OT plan in the log domain, batched. cost (B, n, m), marginals a (B, n), b (B, m) (zeros allowed
    on padding). Returns the plan (B, n, m) without gradient (the envelope theorem: d<P*, C>/dC = P*)."""
    with torch.no_grad():
        log_k = -cost / reg
        log_a = torch.where(a > 0, a.clamp_min(1e-30).log(), torch.full_like(a, -torch.inf))
        log_b = torch.where(b > 0, b.clamp_min(1e-30).log(), torch.full_like(b, -torch.inf))
        u, v = torch.zeros_like(a), torch.zeros_like(b)
        for it in range(max_iter):
            u = log_a - torch.logsumexp(log_k + v[:, None, :], dim=2)
            v = log_b - torch.logsumexp(log_k + u[:, :, None], dim=1)
            if it % 10 == 0:
                row = torch.exp(log_k + u[:, :, None] + v[:, None, :]).sum(2)
                if (row - a).abs().sum(-1).max() < tol:
                    break
        return torch.exp(log_k + u[:, :, None] + v[:, None, :])


def sinkhorn_log_pot(cost, a, b, reg: float, max_iter: int, tol: float) -> torch.Tensor:
    """Same plan through POT's batched log-domain solver (`ot.batch.solve_batch(method="log_sinkhorn")`)."""
    from ot.batch import solve_batch  # noqa: PLC0415  (training-only dependency)

    res = solve_batch(cost.detach(), reg=reg, a=a, b=b, max_iter=max_iter, tol=tol, method="log_sinkhorn",
                      grad="detach")
    return res.plan.detach()


class SinkhornOTLoss:
    """Entropic OT with both marginals: loss = mean_b <P*_b, C_b>, P* the regularised plan.

    Args:
        reg: entropic regularisation on the cosine cost (in [0, 2]); smaller is closer to exact OT.
        y_mass: "norm" (|y_j| / sum |y_k|, detached, like x) or "uniform" over y's valid positions.
        solver: "pot" (POT's batched solver) or "torch" (the pure-torch loop, no POT needed).
    """

    def __init__(self, reg: float = 0.05, y_mass: str = "norm", solver: str = "pot", max_iter: int = 200,
                 tol: float = 1e-4):
        if y_mass not in ("norm", "uniform"):
            raise ValueError(f"y_mass must be 'norm' or 'uniform', got {y_mass!r}")
        if solver not in ("pot", "torch"):
            raise ValueError(f"solver must be 'pot' or 'torch', got {solver!r}")
        if reg <= 0:
            raise ValueError(f"reg must be > 0 for entropic OT, got {reg}")
        self.reg, self.y_mass, self.solver, self.max_iter, self.tol = reg, y_mass, solver, max_iter, tol

    def __call__(self, x, x_mask, y, y_mask) -> torch.Tensor:
        x, x_mask, y, y_mask, valid = _check(x, x_mask, y, y_mask)
        # Padded/empty samples: give them a 1x1 dummy problem so the batched solver stays finite, then drop them.
        x_mask = torch.where(valid[:, None], x_mask, torch.nn.functional.one_hot(
            torch.zeros_like(valid, dtype=torch.long), x_mask.shape[1]).float())
        y_mask = torch.where(valid[:, None], y_mask, torch.nn.functional.one_hot(
            torch.zeros_like(valid, dtype=torch.long), y_mask.shape[1]).float())
        cost = cosine_cost(x, y)  # (B, Lx, Ly)
        a = norm_mass(x, x_mask)
        b = norm_mass(y, y_mask) if self.y_mass == "norm" else y_mask / y_mask.sum(-1, keepdim=True)
        solve = sinkhorn_log_pot if self.solver == "pot" else sinkhorn_log_torch
        # Padded pairs get a large cost and zero mass; the plan is exactly 0 there.
        masked_cost = cost.detach().masked_fill((x_mask[:, :, None] * y_mask[:, None, :]) == 0, _MASKED_COST)
        plan = solve(masked_cost, a, b, self.reg, self.max_iter, self.tol)
        plan = plan * x_mask[:, :, None] * y_mask[:, None, :]
        per_sample = (plan * cost).sum((1, 2))  # (B,)
        return _mean_over_valid(per_sample, valid)


def build_ot_loss(backend: str = "relaxed", **kwargs):
    """Name -> loss function for `model.set_ot_loss`: "relaxed", "sinkhorn" (POT) or "sinkhorn_torch"."""
    if backend == "relaxed":
        if kwargs:
            raise ValueError(f"the relaxed OT loss takes no options, got {sorted(kwargs)}")
        return relaxed_ot_loss
    if backend == "sinkhorn":
        return SinkhornOTLoss(**kwargs)
    if backend == "sinkhorn_torch":
        return SinkhornOTLoss(solver="torch", **kwargs)
    raise ValueError(f"unknown ot_backend {backend!r}; valid: 'relaxed', 'sinkhorn', 'sinkhorn_torch'")
