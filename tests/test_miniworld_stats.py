"""The mini-world's intervals (bootstrap over items and seeds) and its job runner."""

import collections
import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest

from miniworld import stats
from miniworld.jobs import Job, run_jobs
from miniworld.runs import read_kept, write_kept


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


def test_error_analysis_of_the_answer_in_the_questions_language(tmp_path):
    """Item by item: the in-language answer states its English answer's number (or another, or none), and is
    written in the language's script or not; a Latin-script language gets no script verdict."""
    import json

    from miniworld.evaluate import math_outcomes

    cases = [  # (language, English answer, answer in the question's language, reference)
        ("qab_Cyrl", "3 + 4 = 7. The answer is 7.", "гяса 3 + 4 = 7. ся 7.", "7"),  # right, agrees, Cyrillic
        ("qab_Cyrl", "3 + 4 = 8. The answer is 8.", "гяса 3 + 4 = 8. ся 8.", "7"),  # wrong, but agrees
        ("qab_Cyrl", "3 + 4 = 7. The answer is 7.", "гяса 3 + 4 = 7. ся 5.", "7"),  # another number
        ("qab_Cyrl", "3 + 4 = 7. The answer is 7.", "the answer is seven", "7"),  # no number, Latin letters
        ("qaa_Latn", "The answer is 2.", "volol 2.", "2"),
    ]
    run = tmp_path / "mgsm"
    run.mkdir()
    rows = [dict(id=f"{lang}:{i}", src_lang=lang, tgt_lang=lang, reference=ref,
                 predictions={"eng_Latn": en, lang: x}) for i, (lang, en, x, ref) in enumerate(cases)]
    (run / "predictions.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = math_outcomes(run)
    assert out["answer-en"]["qab"] == [1.0, 0.0, 1.0, 1.0] and out["answer-x"]["qab"] == [1.0, 0.0, 0.0, 0.0]
    assert out["x-agrees"]["qab"] == [1.0, 1.0, 0.0, 0.0] and out["x-no-number"]["qab"] == [0.0, 0.0, 0.0, 1.0]
    assert out["x-in-script"]["qab"] == [1.0, 1.0, 1.0, 0.0]
    assert out["x-agrees"]["qaa"] == [1.0] and "qaa" not in out["x-in-script"]


def test_nmt_sweep_keeps_both_directions_of_a_pair_and_about_its_share():
    """The sweep NMT's data: each language keeps about its level's share of pairs, chosen by hash (the same pairs in
    every run), both directions of a pair together; languages without a level keep all."""
    from miniworld.bases import keeps_pair

    levels = {"qab_Cyrl": 0.1, "qad_Deva": 0.01}
    sentences = [f"Tom buys {i} apples at the market." for i in range(20000)]
    for lang, level in (("qab_Cyrl", 0.1), ("qad_Deva", 0.01), ("qaa_Latn", 1.0)):
        kept = [keeps_pair(dict(src_text=f"x {en}", src_lang=lang, tgt_text=en, tgt_lang="eng_Latn"), levels)
                for en in sentences]
        back = [keeps_pair(dict(src_text=en, src_lang="eng_Latn", tgt_text=f"x {en}", tgt_lang=lang), levels)
                for en in sentences]
        assert kept == back
        assert abs(sum(kept) / len(sentences) - level) < 0.2 * level + 0.002
    # the levels pick independent sentences per language (a hash of language and sentence)
    qab = {en for en in sentences if keeps_pair(dict(src_text="", src_lang="qab_Cyrl", tgt_text=en, tgt_lang="eng_Latn"), levels)}
    qad = {en for en in sentences if keeps_pair(dict(src_text="", src_lang="qad_Deva", tgt_text=en, tgt_lang="eng_Latn"), levels)}
    assert not qad <= qab


def test_ablation_schedule_keeps_the_general_stage_1_whole(tmp_path):
    """Figure 4's shorter schedule cuts every stage to a third, except the general world's stage 1 (and the
    encoder-only one), which reads only after its loss drop; the first world's ablation keeps its committed cut."""
    from miniworld.ablation import SCHEDULE_FRACTION, ablation_schedule
    from miniworld.pipeline import Plan

    general = Plan.make(tmp_path, tmp_path, general=True)
    short = ablation_schedule(general)
    assert (short.stage1, short.enc_only1) == (general.schedule.stage1, general.schedule.enc_only1) == (2000, 2000)
    assert short.stage2 == round(general.schedule.stage2 * SCHEDULE_FRACTION) < general.schedule.stage2
    first = Plan.make(tmp_path, tmp_path)
    assert ablation_schedule(first).stage1 == round(first.schedule.stage1 * SCHEDULE_FRACTION) == 67


def test_ablation_rows_share_the_stage_1_they_do_not_change(tmp_path):
    """The reference and the merged row train one stage 1 per seed: in the general world the main job's own (the
    same command: the job runner runs it once in `paper`), in the first world (a shorter stage 1) the reference's.
    The rows that change stage 1 (Sinkhorn, no OT, the defect) train their own."""
    from miniworld.ablation import REFERENCE, ablation_parts
    from miniworld.pipeline import Plan, main_job_parts
    from miniworld.world import WorldConfig

    def stage1(jobs, name):
        return next(job.args for job in jobs if job.name == name)

    general = dataclasses.replace(Plan.make(tmp_path / "g", tmp_path / "gr", general=True), world=WorldConfig.fast())
    ablation, _ = ablation_parts(general)
    main, _ = main_job_parts(general)
    for seed in general.seeds:
        assert stage1(ablation, f"{REFERENCE}/s{seed}/stage1") == stage1(main, f"xbridge/s{seed}/stage1")
        assert stage1(ablation, f"stages 2+3 merged/s{seed}/stage1") == stage1(main, f"xbridge/s{seed}/stage1")
        assert (stage1(ablation, f"no decoder (encoder-only)/s{seed}/stage1")
                == stage1(main, f"xbridge-encoder-only/s{seed}/stage1"))
        for own in ("sinkhorn OT", "no OT", "stage-1 defect"):
            assert stage1(ablation, f"{own}/s{seed}/stage1") != stage1(main, f"xbridge/s{seed}/stage1"), own
    assert stage1(ablation, f"{REFERENCE}/s0/stage1") != stage1(ablation, f"{REFERENCE}/s1/stage1")
    first = dataclasses.replace(Plan.make(tmp_path / "f", tmp_path / "fr"), world=WorldConfig.fast())
    ablation, _ = ablation_parts(first)
    main, _ = main_job_parts(first)
    assert stage1(ablation, "stages 2+3 merged/s0/stage1") == stage1(ablation, f"{REFERENCE}/s0/stage1")
    assert stage1(ablation, f"{REFERENCE}/s0/stage1") != stage1(main, "xbridge/s0/stage1")  # a third of its steps


def test_nmt_sweep_jobs_wait_for_the_sweep_nmt(tmp_path):
    """Every system of the sweep is evaluated over (or trained on) the sweep's own NMT, never the shipped one."""
    from miniworld.pipeline import Plan
    from miniworld.sweep import MATCHED, MATCHED_ALL, sweep_jobs
    from miniworld.world import WorldConfig

    plan = Plan.make(tmp_path / "run", tmp_path / "results", general=True, llm="llama")
    plan = dataclasses.replace(plan, world=WorldConfig.fast())
    jobs = {job.name: job for job in sweep_jobs(plan)}
    nmt = str(plan.out / "nmt-sweep")
    assert jobs["nmt-sweep"].args[:3] == ("nmt-sweep", str(plan.world_dir), nmt)
    for name in ("nmt/eval", "translate-test/eval", *(f"{system}/s{seed}/stage1" for seed in plan.seeds
                                                       for system in ("xbridge", MATCHED))):
        assert jobs[name].after == ("nmt-sweep",), name
    for system, data in (("xbridge", plan.data_dir), (MATCHED, plan.out / "matched-data")):
        stage1 = jobs[f"{system}/s0/stage1"].args[2]
        assert stage1[stage1.index("--nmt_name_or_path") + 1] == nmt
        assert stage1[stage1.index("--train_file") + 1] == str(data / "stage1.jsonl"), system
    # the bridge with the task data cut as well goes on from the matched bridge's stage 1 (the same records)
    assert f"{MATCHED_ALL}/s0/stage1" not in jobs
    stage2 = jobs[f"{MATCHED_ALL}/s0/stage2"]
    assert stage2.after == (f"{MATCHED}/s0/stage1",)
    assert stage2.args[2][stage2.args[2].index("--model_name_or_path") + 1] == jobs[f"{MATCHED}/s0/stage1"].args[0]
    assert stage2.args[2][stage2.args[2].index("--train_file") + 1] == str(plan.out / "matched-all-data" / "task.jsonl")
    assert jobs["translate-test/eval"].args[6]["nmt"] == nmt


def test_matched_sweep_data_cut_by_the_nmt_pairs_hash(tmp_path):
    """The matched bridge's stage 1 keeps a record only where the sweep NMT keeps the pair of each of its
    non-English languages with the same English sentence; English-only records stay whole, and the task data too
    unless they are cut as well (keyed on their English answer)."""
    from miniworld.bases import keeps_pair
    from miniworld.sweep import NMT_SWEEP_LEVELS
    from miniworld.sweep import write_matched_data

    def record(i, src, tgt):
        return dict(src_text=f"{src} {i}", src_lang=src, en_text=f"Tom buys {i} apples.", tgt_text=f"{tgt} {i}", tgt_lang=tgt)

    pairs = [("eng_Latn", "eng_Latn"), ("qaa_Latn", "eng_Latn"), ("eng_Latn", "qad_Deva"), ("qab_Cyrl", "qad_Deva"),
             ("qad_Deva", "qad_Deva"), ("qab_Cyrl", "qab_Cyrl")]
    rows = [record(i, src, tgt) for i in range(3000) for src, tgt in pairs]
    data = tmp_path / "data"
    data.mkdir()
    (data / "stage1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = [dict(question=f"q{i}", src_lang=lang, answer_en=f"Tom has {i} apples.", answer_tgt=f"a{i}", tgt_lang=lang)
             for i in range(3000) for lang in ("eng_Latn", "qaa_Latn", "qab_Cyrl", "qad_Deva")]
    (data / "task.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tasks))
    out = write_matched_data(data, tmp_path / "matched")
    kept = [json.loads(line) for line in (out / "stage1.jsonl").read_text().splitlines()]
    assert (out / "task.jsonl").read_text() == (data / "task.jsonl").read_text()

    def nmt_keeps(lang, en):
        return keeps_pair(dict(src_text=en, src_lang="eng_Latn", tgt_text="", tgt_lang=lang), NMT_SWEEP_LEVELS)

    expected = [r for r in rows if all(nmt_keeps(lang, r["en_text"]) for lang in {r["src_lang"], r["tgt_lang"]} - {"eng_Latn"})]
    assert kept == expected
    count = collections.Counter((r["src_lang"], r["tgt_lang"]) for r in kept)
    assert count["eng_Latn", "eng_Latn"] == count["qaa_Latn", "eng_Latn"] == 3000  # English, and qaa at 100%
    assert 10 <= count["qad_Deva", "qad_Deva"] == count["eng_Latn", "qad_Deva"] <= 60  # ~1% of 3000
    assert 200 <= count["qab_Cyrl", "qab_Cyrl"] <= 400  # ~10%
    assert count["qab_Cyrl", "qad_Deva"] < count["qad_Deva", "qad_Deva"]  # both languages' levels apply
    cut = write_matched_data(data, tmp_path / "matched-all", task=True)
    assert (cut / "stage1.jsonl").read_text() == (out / "stage1.jsonl").read_text()
    kept_tasks = [json.loads(line) for line in (cut / "task.jsonl").read_text().splitlines()]
    assert kept_tasks == [r for r in tasks if r["src_lang"] == "eng_Latn" or nmt_keeps(r["src_lang"], r["answer_en"])]
    by_lang = collections.Counter(r["src_lang"] for r in kept_tasks)
    assert by_lang["eng_Latn"] == by_lang["qaa_Latn"] == 3000 and 10 <= by_lang["qad_Deva"] <= 60


def _square(x):
    return x * x


def _add(x, *after):
    return x + sum(after)


def _logged_square(log, x):
    with open(log, "a") as f:
        f.write(f"{x}\n")
    return x * x


def test_job_runner_runs_identical_jobs_once(tmp_path):
    """Two parts' identical jobs (the ablation's reference stage 1 is the main job's) run once; both names get its
    result, and a job after the second waits for the first."""
    log = str(tmp_path / "runs.log")
    jobs = [Job("main:stage1", _logged_square, (log, 3)), Job("ablation:stage1", _logged_square, (log, 3)),
            Job("other", _logged_square, (log, 4)), Job("ablation:stage2", _add, (1,), after=("ablation:stage1",))]
    assert run_jobs(jobs, workers=2) == {"main:stage1": 9, "ablation:stage1": 9, "other": 16, "ablation:stage2": 10}
    assert sorted(Path(log).read_text().split()) == ["3", "4"]


def test_job_runner_keeps_results_and_reuses_them_only_for_the_same_fingerprint(tmp_path):
    """A job with a cache file: the next run with the same jobs takes its result from there and runs neither it nor
    the training job only it waited for; another argument upstream is another fingerprint, so both run again."""
    log, kept = str(tmp_path / "runs.log"), str(tmp_path / "kept" / "eval.json.gz")

    def jobs(x):
        return [Job("train", _logged_square, (log, x)), Job("eval", _add, (1,), after=("train",), cache=kept)]

    assert run_jobs(jobs(3), workers=1) == {"train": 9, "eval": 10}
    first = Path(kept).read_bytes()
    assert run_jobs(jobs(3), workers=1) == {"eval": 10}  # from the cache: nothing ran
    assert Path(log).read_text().split() == ["3"]
    assert run_jobs(jobs(4), workers=1) == {"train": 16, "eval": 17}
    assert Path(log).read_text().split() == ["3", "4"]
    run_jobs(jobs(3), workers=1)
    assert Path(kept).read_bytes() == first  # the same result, the same bytes
    # a result comes back as it was, its keys in their order (the reports' rows and columns follow it)
    ordered = Job("outcomes", _square, (), cache=str(tmp_path / "ordered.json.gz"))
    result = {"mgsm": {"answer-en": {"en": [1.0, 0.0], "qab": [0.5]}}, "losses": {"stage3": {"loss": [2, 1]}, "stage1": {}}}
    write_kept(ordered.cache, ordered.name, "f", result)
    assert json.dumps(read_kept(ordered.cache, "f")) == json.dumps(result) and read_kept(ordered.cache, "g") is None


def test_a_key_follows_the_shipped_checkpoints_its_job_names(tmp_path, monkeypatch):
    """Publishing a base changes the keys of the jobs that use it, and only theirs."""
    from miniworld import runs, shipped

    sums = tmp_path / "SHA256SUMS"
    monkeypatch.setattr(runs, "SHIPPED_SUMS", sums)
    pool = [Job("llama", _square, (shipped.checkpoint("llm-llama"),)), Job("gemma", _square, (shipped.checkpoint("llm-gemma"),))]
    before = {"llm-llama": "aa", "llm-gemma": "bb"}
    sums.write_text("".join(f"{sha}  {kind}/model.safetensors\n" for kind, sha in before.items()))
    first = runs.job_keys(pool)
    sums.write_text("".join(f"{sha}  {kind}/model.safetensors\n" for kind, sha in (before | {"llm-gemma": "cc"}).items()))
    second = runs.job_keys(pool)
    assert first["llama"] == second["llama"] and first["gemma"] != second["gemma"]


def test_job_runner_respects_dependencies_and_reports_failures():
    jobs = [Job("a", _square, (3,)), Job("b", _square, (4,)), Job("c", _add, (1,), after=("a", "b"))]
    assert run_jobs(jobs, workers=2) == {"a": 9, "b": 16, "c": 26}
    with pytest.raises(ValueError, match=r"unknown jobs \['z'\]"):
        run_jobs([Job("a", _square, (1,), after=("z",))], workers=1)
    with pytest.raises(TypeError):
        run_jobs([Job("bad", _square, ("x", "y"))], workers=1)


class _Peek(__import__("torch").nn.Module):
    """A 'model' that reads the next input token (`ahead` = 1) or a later one: its loss is zero exactly on the
    positions a probe scores if, and only if, the probe lines its logits up with the tokens they predict."""

    def __init__(self, vocab: int, ahead: int):
        super().__init__()
        self.vocab, self.ahead = vocab, ahead

    def forward(self, input_ids):
        import torch
        from types import SimpleNamespace

        ids = input_ids[0]
        nxt = torch.cat([ids[self.ahead:], ids.new_zeros(self.ahead)])  # ahead 0: the token itself
        return SimpleNamespace(logits=50.0 * torch.nn.functional.one_hot(nxt, self.vocab).float()[None])


def test_copy_probes_score_exactly_the_second_copy():
    from transformers import AutoTokenizer

    from miniworld import shipped
    from miniworld.base_eval import copy_nll
    from miniworld.probes import embedding_read_back_nll

    tok = AutoTokenizer.from_pretrained(shipped.checkpoint("llm-llama"))
    texts = ["Mia buys 3 red apples at the market.", "the Ben Omar park yesterday sees a."]
    aligned = _Peek(len(tok), 1)
    assert copy_nll(aligned, tok, texts) < 1e-6 and embedding_read_back_nll(aligned, tok, texts[0]) < 1e-6
    for off_by_one in (_Peek(len(tok), 0), _Peek(len(tok), 2)):
        assert copy_nll(off_by_one, tok, texts) > 10 and embedding_read_back_nll(off_by_one, tok, texts[0]) > 10
    # a mean loss keeps its scale (accuracies are turned into percent)
    assert stats.mean_of([[[1.5, 2.5]]], scale=1.0).mean == pytest.approx(2.0)


def test_a_finished_stage_is_reused_only_for_the_same_command(tmp_path):
    """The job cache: a stage folder with a COMPLETED marker is reused (not retrained) for the same command, and a
    changed recipe is a clear error naming what changed, never a silent reuse of the old stage."""
    import json

    from miniworld.bridge import train

    out = tmp_path / "stage3"
    out.mkdir()
    flags = ["--max_steps", "200", "--seed", "0"]
    (out / "COMPLETED").write_text(json.dumps({"command": ["-m", "train", "stage3", *flags], "losses": {}}))
    assert train(str(out), ["train", "stage3"], flags) == str(out)  # reused: nothing was run (no train.log)
    assert not (out / "train.log").exists()
    with pytest.raises(RuntimeError, match="800"):
        train(str(out), ["train", "stage3"], ["--max_steps", "800", "--seed", "0"])


def test_a_finished_base_is_reused_only_with_the_same_settings(tmp_path):
    """Bases follow the same rule as stages: the same settings reuse the folder, another setting of that base is an
    error naming it, a setting of the other base does not matter, and a field the old base predates is its default."""
    import json

    from miniworld.bases import BaseConfig, trained_with

    out = tmp_path / "llm-llama"
    out.mkdir()
    assert not trained_with(out, BaseConfig.general(), "llm_")  # not finished: train it
    recorded = dataclasses.asdict(BaseConfig.general())
    (out / "COMPLETED").write_text(json.dumps({"config": recorded}))
    assert trained_with(out, BaseConfig.general(), "llm_")
    assert trained_with(out, dataclasses.replace(BaseConfig.general(), nmt_steps=1), "llm_")
    for changed in (dict(llm_copy_warmup_steps=1500), dict(llm_by_length=True), dict(llm_steps=1), dict(seed=1)):
        with pytest.raises(RuntimeError, match=next(iter(changed))):
            trained_with(out, dataclasses.replace(BaseConfig.general(), **changed), "llm_")
    # a base trained before the copy fields existed: its record lacks them, which means their defaults (no copying)
    del recorded["llm_copy_warmup_steps"], recorded["llm_copy_fraction"], recorded["llm_by_length"]
    (out / "COMPLETED").write_text(json.dumps({"config": recorded}))
    old_recipe = dataclasses.replace(BaseConfig.general(), llm_copy_warmup_steps=0, llm_copy_fraction=0.0, llm_by_length=True)
    assert trained_with(out, old_recipe, "llm_")
    with pytest.raises(RuntimeError, match="llm_copy_warmup_steps"):
        trained_with(out, BaseConfig.general(), "llm_")


def test_copy_documents_repeat_random_words_of_the_text():
    """The copy warm-up's documents: p 5-20 words drawn from the texts' words, the same for the same seed; encoded as
    p, newline, p with the loss on the second p (and the end of text) only."""
    from transformers import AutoTokenizer

    from miniworld import shipped
    from miniworld.bases import copy_documents, encode_general

    texts = ["Mia buys 3 red apples.", "Tom sees the park."]
    words = {w for t in texts for w in t.split()}
    docs = copy_documents(texts, 200, seed=0)
    assert docs == copy_documents(texts, 200, seed=0) and docs != copy_documents(texts, 200, seed=1)
    assert all(set(d["copy"].split()) <= words for d in docs)
    assert {len(d["copy"].split()) for d in docs} == set(range(5, 21))
    tok = AutoTokenizer.from_pretrained(shipped.checkpoint("llm-llama"))
    row = encode_general(tok, docs[:1], max_len=128)[0]
    passage = tok(docs[0]["copy"], add_special_tokens=False)["input_ids"]
    scored = [label for label in row["labels"] if label != -100]
    assert scored == passage + [tok.eos_token_id]
    assert row["input_ids"][-len(passage) - 1:-1] == passage and row["input_ids"][1:len(passage) + 1] == passage


def test_bases_report_names_changed_settings_and_the_rows_it_did_not_rebuild(tmp_path):
    """`bases --general --what llm-gemma`: the rebuilt base's differing weights are explained by the settings that
    changed; the bases it did not rebuild are marked as the last report's, not compared again."""
    from miniworld.report import write_bases_report

    llm = dict(accuracy=99.0, n=100, summary_rouge_l=79.8, n_stories=100, story_nll=1.88)
    comparison = dict(rebuilt={"llm-llama": llm, "llm-gemma": llm}, shipped={"llm-llama": llm, "llm-gemma": llm},
                      identical={"llm-llama": None,
                                 "llm-gemma": dict(identical=False, max_abs_diff=1.6, worst_tensor="w",
                                                   changed_settings={"llm_copy_warmup_until": [0.0, 1.0]})},
                      from_last_report=["llm-llama"])
    write_bases_report(comparison, tmp_path, "bases-general")
    text = (tmp_path / "base_models_general.md").read_text()
    assert "- llm-llama: not rebuilt by this run" in text
    assert "trained with other settings (`llm_copy_warmup_until` 0.0 -> 1.0)" in text
    assert "rebuilt llm-gemma; the rebuilt column of llm-llama is the last report's" in text


def test_sweep_report_compares_every_bridge_with_the_cascade_on_the_same_items(tmp_path):
    """The sweep's report: each XBridge minus translate-test, and the bridges against each other, paired over the
    same items per language; its table has one column per system and task; the plot is written."""
    from miniworld.evaluate import _metric
    from miniworld.pipeline import Plan
    from miniworld.sweep import MATCHED, MATCHED_ALL, SYSTEMS, write_sweep_report

    refs = [f"Tom buys {i} red apples at the market." for i in range(20)]

    def flores(hyps):
        stats = _metric("chrF++")._extract_corpus_statistics(hyps, [refs])
        return [list(map(float, s)) for s in stats]

    good, bad = flores(refs), flores([f"Mia {i}" for i in range(20)])
    nmt = {"flores": {d: {"qaa": good, "qad": bad} for d in ("x-en", "en-x")}}

    def run(summary_qad, answer_qad):  # summaries at 0.9 / answers right on qaa; on qad as given
        return {"mgsm": {t: {"qaa": [1.0] * 20, "qad": [float(i < 20 * answer_qad) for i in range(20)]}
                         for t in ("answer-en", "answer-x")},
                "xlsum": {"summary": {"qaa": [0.9] * 20, "qad": [summary_qad] * 20}}}

    per_system = {"nmt": [nmt], "translate-test": [run(0.3, 0.7)], "xbridge": [run(0.65, 0.7)] * 3,
                  MATCHED: [run(0.6, 0.7)] * 3, MATCHED_ALL: [run(0.2, 0.2)] * 3}
    plan = Plan.make(tmp_path / "run", tmp_path / "sweep", general=True)
    zero = {"mean": 0.0, "sd": 0.0, "ci95": [0.0, 0.0], "seeds": 1}
    main = {"translation": {f"nmt {d}": {"qaa": zero, "qad": zero} for d in ("x-en", "en-x")},
            "math": {"answer-en": {}, "answer-x": {}}, "summary": {}}
    out = write_sweep_report(plan, per_system, main)
    diffs = out["differences"]
    assert diffs[f"{MATCHED} - translate-test qad summary"]["mean"] == pytest.approx(30.0)
    assert diffs[f"{MATCHED_ALL} - translate-test qad summary"]["mean"] == pytest.approx(-10.0)
    assert diffs[f"xbridge - {MATCHED} qad summary"]["mean"] == pytest.approx(5.0)
    assert diffs[f"{MATCHED} - {MATCHED_ALL} qad answer-en"]["mean"] == pytest.approx(50.0)
    assert diffs["xbridge - translate-test qaa answer-en"]["ci95"] == [0.0, 0.0]
    qad = next(p for p in out["points"] if p["lang"] == "qad" and p["nmt"] == "nmt-sweep")
    assert qad["level"] == 0.01 and qad["chrf"]["x-en"]["mean"] < 20
    readme = (tmp_path / "sweep" / "README.md").read_text()
    header = next(line for line in readme.splitlines() if line.startswith("| language | NMT"))
    assert header.count("|") - 1 == 5 + 3 * len(SYSTEMS)
    assert f"| {MATCHED_ALL} | translate-test | qad | 1% | summary in the story's language (ROUGE-L) | " in readme
    assert "| lower |" in readme and "| higher |" in readme
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 10_000
