"""The OT alignment loss: backends agree, ~0 on identical inputs, padding/permutation invariant, finite grads."""

import pytest
import torch

from train.ot import SinkhornOTLoss, build_ot_loss, cosine_cost, relaxed_ot_loss

BACKENDS = ["relaxed", "sinkhorn", "sinkhorn_torch"]


def _batch(B=3, Lx=5, Ly=7, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(B, Lx, d, generator=g), torch.randn(B, Ly, d, generator=g)
    x_mask, y_mask = torch.ones(B, Lx), torch.ones(B, Ly)
    x_mask[1, 3:] = 0  # ragged lengths
    y_mask[2, 4:] = 0
    return x, x_mask, y, y_mask


def test_relaxed_matches_the_naive_definition():
    x, x_mask, y, y_mask = _batch()
    expected = []
    for b in range(x.shape[0]):
        xb, yb = x[b][x_mask[b] > 0], y[b][y_mask[b] > 0]
        cost = 1 - torch.nn.functional.cosine_similarity(xb[:, None, :], yb[None, :, :], dim=-1)  # the (Lx, Ly, d) way
        w = xb.norm(dim=-1) / xb.norm(dim=-1).sum()
        expected.append((w * cost.min(-1).values).sum())
    torch.testing.assert_close(relaxed_ot_loss(x, x_mask, y, y_mask), torch.stack(expected).mean(), atol=1e-5, rtol=1e-5)


def test_pot_and_torch_sinkhorn_agree():
    x, x_mask, y, y_mask = _batch()
    for y_mass in ("norm", "uniform"):
        pot = SinkhornOTLoss(reg=0.05, y_mass=y_mass, solver="pot", max_iter=500, tol=1e-6)(x, x_mask, y, y_mask)
        tch = SinkhornOTLoss(reg=0.05, y_mass=y_mass, solver="torch", max_iter=500, tol=1e-6)(x, x_mask, y, y_mask)
        torch.testing.assert_close(pot, tch, atol=1e-4, rtol=1e-4)


def test_sinkhorn_upper_bounds_relaxed_and_tends_to_it_for_one_column():
    x, x_mask, y, y_mask = _batch()
    # The relaxed variant drops y's marginal, so it is a lower bound of the two-marginal transport cost.
    assert relaxed_ot_loss(x, x_mask, y, y_mask) <= build_ot_loss("sinkhorn", reg=0.01)(x, x_mask, y, y_mask) + 1e-4
    # With a single y position both must send all mass there: identical values.
    y1, m1 = y[:, :1], y_mask[:, :1]
    torch.testing.assert_close(relaxed_ot_loss(x, x_mask, y1, m1), build_ot_loss("sinkhorn")(x, x_mask, y1, m1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_identical_inputs_give_about_zero(backend):
    x, x_mask, _, _ = _batch()
    loss = build_ot_loss(backend)(x, x_mask, x.clone(), x_mask.clone())
    assert abs(loss.item()) < 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_invariant_to_padding_and_permutation(backend):
    fn = build_ot_loss(backend)
    x, x_mask, y, y_mask = _batch()
    ref = fn(x, x_mask, y, y_mask)
    # Extra padding with garbage values on both sides changes nothing.
    pad_x = torch.cat([x, 100 * torch.randn(3, 4, 16)], 1)
    pad_y = torch.cat([y, 100 * torch.randn(3, 6, 16)], 1)
    padded = fn(pad_x, torch.cat([x_mask, torch.zeros(3, 4)], 1), pad_y, torch.cat([y_mask, torch.zeros(3, 6)], 1))
    torch.testing.assert_close(padded, ref, atol=1e-5, rtol=1e-5)
    # Permuting the positions (with their masks) of either side changes nothing.
    px, py = torch.randperm(x.shape[1]), torch.randperm(y.shape[1])
    torch.testing.assert_close(fn(x[:, px], x_mask[:, px], y[:, py], y_mask[:, py]), ref, atol=1e-5, rtol=1e-5)
    # Each sample stands alone: the batch loss is the mean of the per-sample losses.
    singles = [fn(x[b:b + 1], x_mask[b:b + 1], y[b:b + 1], y_mask[b:b + 1]) for b in range(3)]
    torch.testing.assert_close(ref, torch.stack(singles).mean(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_are_finite_and_only_reach_y(backend):
    x, x_mask, y, y_mask = _batch()
    x.requires_grad_(True)
    y = (10 * y).requires_grad_(True)
    y.retain_grad()
    loss = build_ot_loss(backend)(x, x_mask, y, y_mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    assert x.grad is None  # x is a constant target
    assert (y.grad[2, 4:] == 0).all()  # padded positions get no gradient


def test_bf16_inputs_and_a_sample_without_targets():
    x, x_mask, y, y_mask = _batch()
    x_mask[0] = 0  # no OT target for this sample: it is left out of the mean
    for backend in BACKENDS:
        fn = build_ot_loss(backend)
        loss = fn(x.bfloat16(), x_mask, y.bfloat16(), y_mask)
        ref = fn(x[1:], x_mask[1:], y[1:], y_mask[1:])
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        torch.testing.assert_close(loss, ref, atol=2e-2, rtol=2e-2)


def test_memory_is_o_b_lx_ly():
    """No (B, Lx, Ly, d) tensor: with d large, the peak extra memory stays near a few (B, Lx, Ly) matrices."""
    B, Lx, Ly, d = 2, 64, 64, 4096
    x, y = torch.randn(B, Lx, d), torch.randn(B, Ly, d, requires_grad=True)
    x_mask, y_mask = torch.ones(B, Lx), torch.ones(B, Ly)
    from torch.profiler import ProfilerActivity, profile

    for backend in BACKENDS:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            build_ot_loss(backend)(x, x_mask, y, y_mask).backward()
        biggest = max(e.cpu_memory_usage for e in prof.events())  # largest single allocation
        input_size, four_d = B * Ly * d * 4, B * Lx * Ly * d * 4
        # (a backward node counts the allocations of the ops under it: allow two input-sized buffers)
        assert biggest <= 2 * input_size < four_d / 16, (backend, biggest, four_d)


def test_errors_name_bad_values():
    with pytest.raises(ValueError, match="unknown ot_backend 'exact'"):
        build_ot_loss("exact")
    with pytest.raises(ValueError, match="same B and d"):
        relaxed_ot_loss(torch.zeros(2, 3, 4), None, torch.zeros(2, 3, 5), None)
    with pytest.raises(ValueError, match="y_mass"):
        SinkhornOTLoss(y_mass="cosine")


def test_cosine_cost_range():
    x, _, y, _ = _batch()
    c = cosine_cost(x, y)
    assert c.shape == (3, 5, 7) and c.min() >= -1e-6 and c.max() <= 2 + 1e-6
