"""The one place where the mini-world runs things side by side.

A job is independent work with a result of its own (one base, one seed's bridge stages, one system's evaluation).
Each runs in its own process whose thread count is set once, at its start, to `THREADS_PER_JOB`, so a job computes
exactly the same numbers whichever worker runs it, whenever it starts and whatever else the machine is doing.
Parallelism is only ever across jobs (`workers`), never inside one job's numerics.

One progress display: a single tqdm bar over all jobs (weighted by their expected cost), its postfix naming what
is running; jobs' own progress bars are off and the training subprocesses write their logs to files.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Callable

from tqdm.auto import tqdm

from train.machine import kernel_env

from .runs import code_state, job_keys, qualname, read_kept, write_kept

# One thread per job: the numbers then do not depend on the machine's core count either (only on its CPU type).
THREADS_PER_JOB = 1
# Environment of every job process and of the training subprocesses they start (read once, at their start).
JOB_ENV = {"OMP_NUM_THREADS": str(THREADS_PER_JOB), "MKL_NUM_THREADS": str(THREADS_PER_JOB), "TQDM_DISABLE": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "warning"}

_progress = None  # in a job process: the queue the parent reads progress from


@dataclass
class Job:
    name: str
    fn: Callable  # a module-level function (it is pickled into the job process)
    args: tuple = ()
    after: tuple[str, ...] = ()  # jobs whose results this one needs; their results are appended to `args`
    cost: float = 1.0  # expected share of the work, for the progress bar only
    # where its result is kept (a committed .json.gz beside the report): a later run whose job has the same key
    # (`runs.job_keys`: what the job depends on) takes the result from there and skips it, and the jobs only it needed
    cache: str | None = None


def _start_job_process(threads: int, progress) -> None:
    global _progress
    import torch  # noqa: PLC0415

    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    hf_logging.disable_progress_bar()  # its loading/saving bars would break the runner's single display
    _progress = progress


def report_progress(name: str, fraction: float) -> None:
    """From inside a job: how far it is (0..1); shown on the parent's single bar."""
    if _progress is not None:
        _progress.put((name, fraction))


def default_workers() -> int:
    """As many jobs at a time as the machine has cores (1 thread each); only wall time depends on it."""
    return max(1, os.cpu_count() or 1)


def run_jobs(jobs: list[Job], workers: int | None = None, desc: str = "jobs", seconds: dict | None = None,
             kernels: dict[str, str] | None = None) -> dict:
    """Run `jobs` (respecting `after`), `workers` at a time; returns {name: result}. A failed job raises here.
    `seconds`: filled with {name: wall seconds} of every job that ran (what the progress weights estimate).
    `kernels`: the CPU-kernel environment of the job processes and their training runs (default
    `train.machine.kernel_env()`: the same kernels on every CPU; `{}`: each library's native choice); part of the
    kept results' keys."""
    kernels = kernel_env() if kernels is None else kernels
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names must be unique: {names}")
    unknown = {dep for job in jobs for dep in job.after} - set(names)
    if unknown:
        raise ValueError(f"jobs depend on unknown jobs {sorted(unknown)}; known: {names}")
    # identical jobs (the same function and arguments: a stage two parts share, as the ablation's reference shares
    # the main job's stage 1) run once; the others take its result
    first, alias = {}, {}
    for job in jobs:
        alias[job.name] = first.setdefault((qualname(job.fn), repr(job.args)), job.name)
    jobs = [replace(job, after=tuple(alias[dep] for dep in job.after)) for job in jobs if alias[job.name] == job.name]
    prints = job_keys(jobs, kernels)
    cached = {job.name: result for job in jobs if (result := read_kept(job.cache, prints[job.name])) is not None}
    to_run = needed(jobs, cached)
    workers = workers or default_workers()
    # job processes inherit JOB_ENV from their start (tqdm reads TQDM_DISABLE when it is imported, before any
    # initializer could set it); this process's own bar was configured at its import and stays on
    env = {**JOB_ENV, **kernels}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        results = _run([job for job in jobs if job.name in to_run], workers, desc, dict(cached), prints,
                       {} if seconds is None else seconds)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return {name: results[target] for name, target in alias.items() if target in results}


def needed(jobs: list[Job], cached: dict) -> set[str]:
    """The jobs still to run: those not cached that a result is wanted from (no job waits for them) or that a job
    still to run waits for."""
    waited_for = {dep for job in jobs for dep in job.after}
    todo = {job.name for job in jobs if job.name not in cached and job.name not in waited_for}
    frontier = list(todo)
    by_name = {job.name: job for job in jobs}
    while frontier:
        for dep in by_name[frontier.pop()].after:
            if dep not in cached and dep not in todo:
                todo.add(dep)
                frontier.append(dep)
    return todo


def _run(jobs: list[Job], workers: int, desc: str, results: dict, prints: dict[str, str], seconds: dict) -> dict:
    """Runs `jobs` on top of `results` (the kept ones) and returns all; a job with a cache file writes its result
    there as soon as it is done (a run stopped halfway keeps what it finished)."""
    pending = {job.name: job for job in jobs}
    by_name, code = dict(pending), code_state()
    fractions = {job.name: 0.0 for job in jobs}
    total = sum(job.cost for job in jobs)
    shown = None
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, tqdm(total=round(total, 2), desc=desc, unit="job",
                                             bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}") as bar:
        progress = manager.Queue()
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_job_process,
                                 initargs=(THREADS_PER_JOB, progress)) as pool:
            running, started = {}, {}
            while pending or running:
                for name, job in list(pending.items()):
                    if all(dep in results for dep in job.after) and len(running) < workers:
                        args = job.args + tuple(results[dep] for dep in job.after)
                        running[pool.submit(job.fn, *args)] = name
                        started[name] = time.time()
                        del pending[name]
                done, _ = wait(running, timeout=2.0, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    results[name] = future.result()  # re-raises a job's exception, naming its traceback
                    seconds[name] = round(time.time() - started[name], 1)
                    if by_name[name].cache:
                        write_kept(by_name[name].cache, name, prints[name], results[name], code)
                    fractions[name] = 1.0
                while True:
                    try:
                        name, fraction = progress.get_nowait()
                    except queue_module.Empty:
                        break
                    if name not in fractions:  # a job reports its own name; in a pool of parts it carries a prefix
                        name = next((n for n in fractions if n.endswith(f":{name}")), name)
                    if name in fractions and fractions[name] < 1.0:
                        fractions[name] = min(fraction, 0.99)
                state = (round(sum(by_name[n].cost * f for n, f in fractions.items()), 2), sorted(running.values()))
                if state != shown:  # redraw only on news: a log file gets a line per change, not per poll
                    bar.n = state[0]
                    bar.set_postfix_str("running: " + ", ".join(state[1]) if state[1] else "", refresh=True)
                    shown = state
    return results


class Stopwatch:
    """Wall seconds per named step (timings go to their own file: results files hold only numbers that repeat)."""

    def __init__(self):
        self.times: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        t0 = time.time()
        result = fn(*args, **kwargs)
        self.times[name] = round(time.time() - t0, 1)
        return result
