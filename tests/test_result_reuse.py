"""Kept results are keyed on what their job depends on (miniworld/runs.py): a code comment keeps them, a changed
recipe value or input file invalidates exactly the jobs that depend on it, and the committed ones are valid."""

import dataclasses
import shutil
from pathlib import Path

import pytest

from miniworld import runs
from miniworld.pipeline import Plan, main_job_parts
from miniworld.world import WorldConfig

REPO = Path(__file__).resolve().parent.parent
TINY = WorldConfig(n_llm_problems=200, n_nmt_items=200, n_stage1=30, n_task=30, n_test_problems=30, n_test_sentences=20,
                   n_llm_general=300, n_nmt_stories=30, n_test_stories=20)


def _keys(plan: Plan) -> dict[str, str]:
    jobs, _ = main_job_parts(plan)
    return runs.job_keys(jobs)


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> Plan:
    root = tmp_path_factory.mktemp("reuse")
    return dataclasses.replace(Plan.make(root / "run", root / "results", fast=True), world=TINY)


def test_a_comment_in_train_keeps_every_key(plan):
    before, code = _keys(plan), runs.code_state()
    path = REPO / "train" / "trainer.py"
    text = path.read_bytes()
    try:
        path.write_bytes(text + b"\n# a comment changes no number\n")
        assert _keys(plan) == before
        assert runs.code_state() != code  # the record of the code does follow it
    finally:
        path.write_bytes(text)


def test_library_versions_are_a_record_not_a_key(plan, tmp_path, monkeypatch):
    """A fresh install takes the newest transformers: the keys stay, and the versions are written beside a result."""
    import gzip
    import json

    before = _keys(plan)
    monkeypatch.setattr(runs, "library_versions", lambda: "(3, 99) torch 9.0 transformers 9.0")
    assert _keys(plan) == before
    runs.write_kept(tmp_path / "kept.json.gz", "a job", "k", {"accuracy": 1.0})
    with gzip.open(tmp_path / "kept.json.gz", "rt") as f:
        assert json.load(f)["libraries"] == "(3, 99) torch 9.0 transformers 9.0"
    assert runs.read_kept(tmp_path / "kept.json.gz", "k") == {"accuracy": 1.0}
    assert runs.read_kept(tmp_path / "kept.json.gz", "another key") is None


def test_a_recipe_value_invalidates_exactly_the_jobs_that_depend_on_it(plan):
    before = _keys(plan)
    longer = dataclasses.replace(plan, schedule=dataclasses.replace(plan.schedule, stage3=plan.schedule.stage3 + 1))
    after = _keys(longer)
    assert {name for name in before if before[name] != after[name]} == {"xbridge/s0", "xbridge/s0/eval"}
    wider = dataclasses.replace(plan, limit=plan.limit + 1)  # the evaluations' item count: every evaluation
    after = _keys(wider)
    assert {name for name in before if before[name] != after[name]} == {name for name in before if name.endswith("eval")}


def test_an_input_file_invalidates_exactly_the_jobs_that_read_it(plan):
    before = _keys(plan)
    task = plan.data_dir / "task.jsonl"
    text = task.read_bytes()
    try:
        task.write_bytes(text.replace(b"\n", b"\n\n", 1))  # the same records, other bytes
        after = _keys(plan)
    finally:
        task.write_bytes(text)
    changed = {name for name in before if before[name] != after[name]}
    # stages 2-3 read the task records; the evaluations after them follow; stage 1 and the untrained systems do not
    assert changed == {"xbridge/s0/stage2", "xbridge/s0", "xbridge/s0/eval", "xbridge-encoder-only/s0",
                       "xbridge-encoder-only/s0/eval"}


def test_regenerated_data_give_the_same_keys(plan):
    """A new session regenerates the world (deterministic): the keys, and so the kept results, stay."""
    before = _keys(plan)
    shutil.rmtree(plan.world_dir)
    assert _keys(plan) == before


@pytest.mark.timeout(900)
def test_the_committed_kept_results_are_valid(tmp_path, monkeypatch):
    """Every kept result committed under results/ matches its job's key: `python -m miniworld paper` on a fresh
    clone trains nothing that is kept (the general world generated once, in the default folders' layout)."""
    from miniworld.ablation import ablation_parts
    from miniworld.bases import LLM_FAMILIES
    from miniworld.sweep import sweep_jobs, sweep_plan

    monkeypatch.chdir(tmp_path)  # the default relative folders (runs/...), as the committed keys name them
    (tmp_path / "results").symlink_to(REPO / "results")
    stale, checked = [], 0
    for llm in LLM_FAMILIES:
        plan = Plan.make(f"runs/miniworld-general/{llm}", f"results/miniworld/general/{llm}", general=True, llm=llm)
        if llm != "llama":
            shutil.copytree(tmp_path / "runs/miniworld-general/llama/world", plan.world_dir)
        parts = [main_job_parts(plan)[0]]
        if llm == "llama":  # each part keyed on its own (their job names overlap; run_parts prefixes them)
            parts += [ablation_parts(plan)[0], sweep_jobs(sweep_plan(plan))]
        for jobs in parts:
            keys = runs.job_keys(jobs, plan.kernels)  # the kernels its jobs run on
            for job in jobs:
                if job.cache and Path(job.cache).exists():
                    checked += 1
                    if runs.read_kept(job.cache, keys[job.name]) is None:
                        stale.append(job.cache)
    assert checked >= 80 and not stale, stale


def test_jobs_compute_on_the_pinned_kernels_whatever_the_cpu_and_the_keys_say_which(plan, monkeypatch):
    """Every job process runs ATen's AVX2 kernels (and MKL's / oneDNN's AVX2 branch) by default, so two kinds of CPU
    compute the same bits; `kernels={}` leaves each library its native choice. The kernels are part of the kept
    results' keys (native: the keys from before the pins), and run_jobs reports each job's wall seconds."""
    from miniworld.jobs import Job, run_jobs
    from train.machine import PORTABLE_KERNELS, kernel_env, process_kernels

    native = process_kernels()["cpu_capability"]
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")  # as if this process ran on a CPU of another kind
    seconds: dict = {}
    pinned = run_jobs([Job("kernels", process_kernels)], workers=1, seconds=seconds)["kernels"]
    assert pinned == {"cpu_capability": "AVX2", **PORTABLE_KERNELS} and seconds["kernels"] > 0
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert run_jobs([Job("kernels", process_kernels)], workers=1, kernels={})["kernels"]["cpu_capability"] == native
    jobs, _ = main_job_parts(plan)
    assert runs.job_keys(jobs, {}) == runs.job_keys(jobs)
    assert set(runs.job_keys(jobs, kernel_env()).values()).isdisjoint(runs.job_keys(jobs).values())
    monkeypatch.setenv("XBRIDGE_KERNELS", "native")
    assert kernel_env() == {}
    monkeypatch.setenv("XBRIDGE_KERNELS", "fastest")
    with pytest.raises(ValueError, match="XBRIDGE_KERNELS='fastest'.*'portable'.*'native'"):
        kernel_env()
