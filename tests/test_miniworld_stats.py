"""The mini-world's intervals (bootstrap over items and seeds) and its job runner."""

import random

import numpy as np
import pytest

from miniworld import stats
from miniworld.jobs import Job, run_jobs


def _outcomes(p: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.random() < p) for _ in range(n)]


def test_interval_covers_the_truth_and_narrows_with_more_items():
    small = stats.accuracy([_outcomes(0.6, 50, s) for s in range(3)])
    large = stats.accuracy([_outcomes(0.6, 2000, s) for s in range(3)])
    assert small.lo < 60 < small.hi and large.lo < 60 < large.hi
    assert (large.hi - large.lo) < (small.hi - small.lo) / 3
    assert small.seeds == 3 and small.sd > 0


def test_seed_spread_widens_the_interval():
    items = 400
    same = [_outcomes(0.5, items, 0)] * 3  # three seeds that agree on every item
    spread = [[float(i < items * p) for i in range(items)] for p in (0.3, 0.5, 0.7)]  # seeds that disagree a lot
    a, b = stats.accuracy(same), stats.accuracy(spread)
    assert a.sd == 0 and b.sd > 15
    assert (b.hi - b.lo) > 2 * (a.hi - a.lo)


def test_intervals_repeat_exactly():
    data = [_outcomes(0.4, 100, s) for s in range(3)]
    assert stats.accuracy(data) == stats.accuracy(data)
    assert stats.difference([data], [data[::-1]]).to_dict() == stats.difference([data], [data[::-1]]).to_dict()


def test_paired_difference_and_verdicts():
    better = [[1.0] * 80 + [0.0] * 20]
    worse = [[1.0] * 50 + [0.0] * 50]
    diff = stats.difference([better], [worse])
    assert diff.mean == pytest.approx(30.0) and diff.lo > 15
    assert stats.verdict(diff) == "higher"
    assert stats.verdict(stats.difference([worse], [better])) == "lower"
    close = stats.difference([[[1.0] * 50 + [0.0] * 50]], [[[1.0] * 49 + [0.0] * 51]])
    assert stats.verdict(close) == "not distinguishable"
    with pytest.raises(ValueError, match="same items"):
        stats.difference([[[1.0] * 10]], [[[1.0] * 11]])


def test_corpus_score_matches_the_sum_of_statistics():
    rng = np.random.default_rng(0)
    per_seed = [rng.integers(1, 10, size=(30, 2)).astype(float) for _ in range(2)]
    score = lambda s: 100 * s[0] / (s[0] + s[1])  # noqa: E731
    est = stats.corpus_score(per_seed, score)
    assert est.mean == pytest.approx(np.mean([score(a.sum(0)) for a in per_seed]))
    assert est.lo <= est.mean <= est.hi


def test_translation_and_summary_outcomes_give_the_harness_scores(tmp_path):
    """Per-sentence statistics summed give eval's corpus chrF++ and BLEU; per-story ROUGE-L averages to eval's."""
    import json

    from eval import metrics
    from miniworld.evaluate import bleu_from_stats, chrf_from_stats, summary_outcomes, translation_stats

    hyps = ["Tom buys 3 apples .", "Anna reads a old book at the school", "the cat", "Mia eats 2 cakes today ."]
    refs = ["Tom buys 3 apples.", "Anna reads an old book at the school.", "The red child sees a cat.", "Mia eats 2 cakes."]
    run = tmp_path / "flores"
    run.mkdir()
    rows = [dict(id=f"deu_Latn:{i}", src_lang="deu_Latn", tgt_lang="eng_Latn", reference=r, predictions={"eng_Latn": h})
            for i, (h, r) in enumerate(zip(hyps, refs))]
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for metric, scorer, expected in (("chrF++", chrf_from_stats, metrics.chrf_pp), ("BLEU", bleu_from_stats,
                                                                                     lambda h, r: metrics.bleu(h, r, "eng_Latn"))):
        per_sentence = np.asarray(translation_stats(run, metric)["x-en"]["deu"])
        assert per_sentence.shape[0] == len(hyps)
        assert scorer(per_sentence.sum(axis=0)) == pytest.approx(expected(hyps, refs)[0])
    per_story = summary_outcomes(run)["summary"]["en"]
    assert np.mean(per_story) * 100 == pytest.approx(metrics.rouge_l(hyps, refs, "eng_Latn"))


def _square(x):
    return x * x


def _add(x, *after):
    return x + sum(after)


def test_job_runner_respects_dependencies_and_reports_failures():
    jobs = [Job("a", _square, (3,)), Job("b", _square, (4,)), Job("c", _add, (1,), after=("a", "b"))]
    assert run_jobs(jobs, workers=2) == {"a": 9, "b": 16, "c": 26}
    with pytest.raises(ValueError, match=r"unknown jobs \['z'\]"):
        run_jobs([Job("a", _square, (1,), after=("z",))], workers=1)
    with pytest.raises(TypeError):
        run_jobs([Job("bad", _square, ("x", "y"))], workers=1)
