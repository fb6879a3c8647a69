"""The mini-world main job, step by step; each step writes into its own folder and is skipped when that folder
holds a completed marker, so a re-run (or a run after a kill) reuses what is finished."""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

from . import base_eval
from .bases import DONE, BaseConfig, is_done, mark_done, train_llm, train_nmt
from .stages import StageSchedule
from .world import WorldConfig, generate


@dataclass
class Plan:
    """Everything that differs between the main job and the fast CI variant."""

    out: Path
    fast: bool = False
    world: WorldConfig = field(default_factory=WorldConfig)
    bases: BaseConfig = field(default_factory=BaseConfig)
    stages: StageSchedule = field(default_factory=StageSchedule)

    @classmethod
    def make(cls, out: str | Path, fast: bool = False) -> Plan:
        if fast:
            return cls(Path(out), True, WorldConfig.fast(), BaseConfig.fast(), StageSchedule.fast())
        return cls(Path(out))

    @property
    def world_dir(self) -> Path:
        return self.out / "world"

    @property
    def nmt_dir(self) -> Path:
        return self.out / "bases" / "nmt"

    @property
    def llm_dir(self) -> Path:
        return self.out / "bases" / "llm"


def _cpu_pressure() -> str | None:
    """Linux PSI line `some avg10=.. avg60=.. avg300=..`: the share of time runnable tasks waited for a CPU."""
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return None


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (subprocess stages, spawned base trainers): what the
    job would take on dedicated cores, whatever else the machine was running."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def machine() -> dict:
    """What the timings were measured on, and how busy it was (shared machines make wall times pessimistic)."""
    return dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
                load_average_1_5_15min=os.getloadavg() if hasattr(os, "getloadavg") else None,
                cpu_pressure=_cpu_pressure())


class Timer:
    """Collects wall-clock seconds per step into `<out>/timings.json` (reused steps keep their first time)."""

    def __init__(self, out: Path, name: str = "timings.json"):
        self.path = out / name
        self.times = json.loads(self.path.read_text()) if self.path.exists() else {}

    REUSED_BELOW_S = 5.0  # a step this quick was reused from disk: keep the time measured when it ran

    def record(self, name: str, seconds: float) -> None:
        if seconds > self.REUSED_BELOW_S or name not in self.times:
            self.times[name] = round(seconds, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.times, indent=1))

    def run(self, name: str, fn, *args, **kwargs):
        t0 = time.time()
        result = fn(*args, **kwargs)
        self.record(name, time.time() - t0)
        return result


def step_generate(plan: Plan) -> Path:
    if not is_done(plan.world_dir):
        summary = generate(plan.world_dir, plan.world)
        mark_done(plan.world_dir, summary["counts"])
    return plan.world_dir


class _TakeFreedCores(TrainerCallback):
    """Once the other base has finished (`freed` is set), this one trains on all the cores."""

    def __init__(self, freed):
        self.freed, self.taken = freed, False

    def on_step_end(self, args, state, control, **kwargs):
        if not self.taken and self.freed.is_set():
            torch.set_num_threads(os.cpu_count() or 1)
            self.taken = True


def _train_base(kind: str, world_dir: Path, out: Path, cfg: BaseConfig, threads: int, freed) -> float:
    """One base in its own process (spawned), with its share of the cores; returns its seconds and sets `freed`."""
    torch.set_num_threads(threads)
    t0 = time.time()
    (train_llm if kind == "llm" else train_nmt)(world_dir, out, cfg, callbacks=[_TakeFreedCores(freed)])
    freed.set()
    return time.time() - t0


def step_bases(plan: Plan, timer: Timer) -> tuple[Path, Path]:
    """The two bases are independent: they train side by side, each on half of the cores (on 2 cores this beats
    one after the other with 2 threads each, which small matrices cannot keep busy)."""
    todo = [(kind, d) for kind, d in (("llm", plan.llm_dir), ("nmt", plan.nmt_dir)) if not is_done(d)]
    if not todo:
        return plan.nmt_dir, plan.llm_dir
    threads = max(1, (os.cpu_count() or 2) // len(todo))
    t0 = time.time()
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(max_workers=len(todo), mp_context=context) as pool:
        freed = manager.Event()
        futures = {kind: pool.submit(_train_base, kind, plan.world_dir, d, plan.bases, threads, freed) for kind, d in todo}
        for kind, future in futures.items():
            timer.record(f"pretrain_{kind}", future.result())
    timer.record("pretrain_bases_wall", time.time() - t0)
    return plan.nmt_dir, plan.llm_dir


def step_base_eval(plan: Plan, timer: Timer, results: Path) -> dict:
    out = plan.out / "base_eval"
    if is_done(out):
        return json.loads((out / "base_models.json").read_text())
    res = dict(llm=timer.run("eval_llm", base_eval.eval_llm, plan.llm_dir, plan.world_dir),
               nmt=timer.run("eval_nmt", base_eval.eval_nmt, plan.nmt_dir, plan.world_dir))
    res["timings"] = {k: v for k, v in timer.times.items() if k.startswith("pretrain")}
    res["bases"] = {name: json.loads((d / DONE).read_text()) for name, d in (("llm", plan.llm_dir), ("nmt", plan.nmt_dir))}
    res["machine"] = machine()
    base_eval.write_report(res, out)
    base_eval.write_report(res, results)
    mark_done(out, {})
    return res
