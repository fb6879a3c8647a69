"""Uncertainty of the mini-world's numbers: bootstrap over test items and training seeds.

A score here is a matrix `items[seed][item]` of per-item values (1/0 for a correct answer; for chrF++ the
per-sentence n-gram statistics, scored at corpus level as sacrebleu does). One bootstrap replicate draws the
seeds with replacement and, independently, the items with replacement, and scores the draw; the 95% interval is
the 2.5-97.5 percentile range of `N_BOOT` replicates. Differences between two systems are paired: both are scored
on the same drawn items (and, for two trained systems, on independently drawn seeds), so "A beats B" is read off
the interval of A - B. Replicates come from a fixed-seed generator: the same inputs give the same intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
BOOT_SEED = 1234


@dataclass(frozen=True)
class Estimate:
    mean: float  # over seeds and items
    sd: float  # spread of the per-seed scores (0 for one seed)
    lo: float  # 95% bootstrap interval
    hi: float
    seeds: int

    def fmt(self, digits: int = 1) -> str:
        spread = f" ±{self.sd:.{digits}f}" if self.seeds > 1 and self.sd > 0 else ""
        return f"{self.mean:.{digits}f}{spread} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"

    def to_dict(self) -> dict:
        return dict(mean=round(self.mean, 4), sd=round(self.sd, 4), ci95=[round(self.lo, 4), round(self.hi, 4)],
                    seeds=self.seeds)

    @classmethod
    def from_dict(cls, d: dict) -> Estimate:
        """The inverse of `to_dict` (an estimate read back from a results.json)."""
        return cls(d["mean"], d["sd"], d["ci95"][0], d["ci95"][1], d["seeds"])


def _draws(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, n, size=(N_BOOT, size))


def accuracy(per_seed: list[list[float]]) -> Estimate:
    """`per_seed[s][i]`: 1.0 if seed s answered item i right (every seed sees the same items)."""
    return mean_of([per_seed])


def mean_of(groups: list[list[list[float]]], scale: float = 100.0) -> Estimate:
    """The average over several groups (languages) of their accuracy; each group: per-seed lists of item values
    (the same seeds in every group). Items are drawn within each group, seeds once for all groups. `scale`: 100
    turns 1/0 item values into percent; 1 keeps them as they are (a mean loss)."""
    arrays = [np.asarray(g, dtype=float) for g in groups]
    seeds = arrays[0].shape[0]
    if any(a.shape[0] != seeds for a in arrays):
        raise ValueError(f"every group needs the same seeds: {[a.shape[0] for a in arrays]}")
    rng = np.random.default_rng(BOOT_SEED)
    seed_draws = _draws(seeds, seeds, rng)
    per_seed = np.mean([a.mean(axis=1) for a in arrays], axis=0) * scale  # (seeds,)
    replicate = sum(_resampled_mean(a, _draws(a.shape[1], a.shape[1], rng), seed_draws) for a in arrays)
    return _estimate(per_seed, replicate / len(arrays) * scale)


def _resampled_mean(a: np.ndarray, items: np.ndarray, seed_draws: np.ndarray) -> np.ndarray:
    """Per replicate: the mean over its drawn seeds of the mean over its drawn items of `a` (seeds x items);
    gathered per seed, never as a (N_BOOT, seeds, items) tensor."""
    item_means = np.stack([a[s][items].mean(axis=1) for s in range(a.shape[0])], axis=1)  # (N_BOOT, seeds)
    return np.take_along_axis(item_means, seed_draws, axis=1).mean(axis=1)


def _estimate(per_seed: np.ndarray, replicate: np.ndarray) -> Estimate:
    lo, hi = np.percentile(replicate, [2.5, 97.5])
    seeds = len(per_seed)
    return Estimate(float(per_seed.mean()), float(per_seed.std(ddof=1)) if seeds > 1 else 0.0, float(lo), float(hi), seeds)


def difference(a_groups: list[list[list[float]]], b_groups: list[list[list[float]]]) -> Estimate:
    """A - B (points), paired over items: both systems are scored on the same item draws; seeds are drawn for
    each system independently (different systems' seeds are unrelated runs)."""
    rng = np.random.default_rng(BOOT_SEED)
    a_arrays = [np.asarray(g, dtype=float) for g in a_groups]
    b_arrays = [np.asarray(g, dtype=float) for g in b_groups]
    sa, sb = a_arrays[0].shape[0], b_arrays[0].shape[0]
    a_seed, b_seed = _draws(sa, sa, rng), _draws(sb, sb, rng)
    replicate = np.zeros(N_BOOT)
    point = 0.0
    for a, b in zip(a_arrays, b_arrays, strict=True):
        if a.shape[1] != b.shape[1]:
            raise ValueError(f"paired difference needs the same items: {a.shape[1]} vs {b.shape[1]}")
        items = _draws(a.shape[1], a.shape[1], rng)
        replicate += _resampled_mean(a, items, a_seed) - _resampled_mean(b, items, b_seed)
        point += a.mean() - b.mean()
    replicate = replicate / len(a_arrays) * 100
    lo, hi = np.percentile(replicate, [2.5, 97.5])
    return Estimate(float(point / len(a_arrays) * 100), 0.0, float(lo), float(hi), min(sa, sb))


def corpus_score(per_seed_stats: list[np.ndarray], score_fn) -> Estimate:
    """A corpus-level metric (chrF++) from per-sentence sufficient statistics `per_seed_stats[s]` (items x k):
    each replicate sums the drawn sentences' statistics and scores the sum with `score_fn`."""
    arrays = [np.asarray(s, dtype=float) for s in per_seed_stats]
    n = arrays[0].shape[0]
    seeds = len(arrays)
    rng = np.random.default_rng(BOOT_SEED)
    seed_draws, items = _draws(seeds, seeds, rng), _draws(n, n, rng)
    per_seed = np.array([score_fn(a.sum(axis=0)) for a in arrays])
    replicate = np.array([np.mean([score_fn(arrays[s][items[r]].sum(axis=0)) for s in seed_draws[r]])
                          for r in range(N_BOOT)])
    return _estimate(per_seed, replicate)


def corpus_difference(a_stats: list[np.ndarray], b_stats: list[np.ndarray], score_fn) -> Estimate:
    """A - B of a corpus-level metric, paired over sentences: each replicate draws the sentences once for both
    systems and each system's seeds independently (`corpus_score`'s inputs for A and for B)."""
    a_arrays, b_arrays = ([np.asarray(s, dtype=float) for s in group] for group in (a_stats, b_stats))
    n = a_arrays[0].shape[0]
    if any(x.shape[0] != n for x in a_arrays + b_arrays):
        raise ValueError("paired difference needs the same sentences in every seed of both systems")
    rng = np.random.default_rng(BOOT_SEED)
    a_seed, b_seed, items = _draws(len(a_arrays), len(a_arrays), rng), _draws(len(b_arrays), len(b_arrays), rng), _draws(n, n, rng)

    def mean_score(arrays, seeds, rows):
        return np.mean([score_fn(arrays[s][rows].sum(axis=0)) for s in seeds])

    point = np.mean([score_fn(a.sum(axis=0)) for a in a_arrays]) - np.mean([score_fn(b.sum(axis=0)) for b in b_arrays])
    replicate = np.array([mean_score(a_arrays, a_seed[r], items[r]) - mean_score(b_arrays, b_seed[r], items[r])
                          for r in range(N_BOOT)])
    lo, hi = np.percentile(replicate, [2.5, 97.5])
    return Estimate(float(point), 0.0, float(lo), float(hi), min(len(a_arrays), len(b_arrays)))


def verdict(diff: Estimate, margin: float = 0.0) -> str:
    """How a difference A - B reads against `margin` (points): the interval decides, not the point estimate."""
    if diff.lo > margin:
        return "higher" if margin == 0 else f"more than {margin:g} higher"
    if diff.hi < -margin:
        return "lower" if margin == 0 else f"more than {margin:g} lower"
    if margin and diff.lo >= -margin and diff.hi <= margin:
        return f"within {margin:g}"
    return "not distinguishable"
