"""The mini-world's jobs, end to end. Data flows one way:

    world.py (generate) -> bases.py (pretrain; shipped.py holds the shipped ones) -> bridge.py (XBridge stages,
    encoder-only) -> evaluate.py (eval/ on the world's test sets) -> stats.py (intervals) -> report.py

`main_job` starts from the shipped bases, as a user starts from NLLB-200 and an LLM, and measures the XBridge part
with several seeds; `rebuild_bases` pretrains the bases from scratch and compares them with the shipped ones;
`ablation` trains every ablation row with the same seeds. Independent jobs run side by side (jobs.py); every
folder holds a `COMPLETED` marker when finished, so a re-run (or a run after a kill) reuses what is done.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from configuration_xbridge import XBridgeConfig
from hub_xbridge import bridge_card, card_text, write_bundle
from safetensors import safe_open
from train.machine import kernel_env, machine

from . import base_eval, experiments, shipped
from .bases import FIRST_BASES, GENERAL_BASES, LLM_FAMILIES, BaseConfig, changed_settings, pretrain
from .bridge import StageSchedule, encoder_only_jobs, sft_jobs, xbridge_jobs
from .evaluate import evaluate, register_languages
from .jobs import Job, Stopwatch, run_jobs
from .runs import done_info, is_done, mark_data_done
from .world import ENGLISH, WorldConfig, generate

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Plan:
    """Everything that differs between the main job and the fast CI variant."""

    out: Path
    results: Path
    fast: bool = False
    schedule: StageSchedule = field(default_factory=StageSchedule)
    seeds: tuple[int, ...] = (0, 1, 2)
    langs: tuple[str, ...] | None = None  # evaluated languages besides English (None: all of the world's)
    limit: int | None = None  # test items per language (None: all)
    world: WorldConfig = field(default_factory=WorldConfig)  # the world the shipped bases were trained on
    # the general world (issue 13): its NMT and a general LLM of this family, math and summaries, harness instructions
    general: bool = False
    llm: str = "llama"
    bases: tuple[str, str] | None = None  # (nmt, llm) folders instead of the shipped ones (a `bases --general` run)

    @classmethod
    def make(cls, out: str | Path, results: str | Path, fast: bool = False, seeds: tuple[int, ...] | None = None,
             general: bool = False, llm: str = "llama") -> Plan:
        """The plan of miniworld/configs/main.yaml or fast.yaml (and general.yaml over it: `general`)."""
        name = "fast" if fast else "main"
        plan = cls(Path(out), Path(results), fast, StageSchedule.fast() if fast else StageSchedule(),
                   tuple(experiments.load(name, "seeds")), _langs(experiments.load(name, "langs")),
                   experiments.load(name, "limit"))
        if general:
            schedule = experiments.section("general", "fast_schedule" if fast else "schedule", cls=StageSchedule,
                                           base=plan.schedule)
            plan = replace(plan, general=True, llm=llm, schedule=schedule)
        return replace(plan, seeds=tuple(seeds)) if seeds else plan

    @property
    def world_dir(self) -> Path:
        return self.out / "world"

    @property
    def data_dir(self) -> Path:
        """Where the bridge stages' stage1.jsonl / task.jsonl are."""
        return self.world_dir / "general" if self.general else self.world_dir

    def base_folders(self) -> tuple[str, str]:
        if self.bases:
            return self.bases
        if self.general:
            return shipped.checkpoint("nmt-general"), shipped.checkpoint(f"llm-{self.llm}")
        return shipped.checkpoint("nmt"), shipped.checkpoint("llm")

    def benchmarks(self, system: str) -> tuple[str, ...]:
        """What a system is scored on. The first world: math, and translation for XBridge and the NMT. The general
        world (the paper's evaluation): math, summaries (not encoder-only: it writes English only, a summary is in
        the story's language) and translation (Table 1) for every system but SFT (a task model, not a translator)."""
        if system == "nmt":
            return ("flores",)
        if not self.general:
            return ("mgsm", "flores") if system == "xbridge" else ("mgsm",)
        return {"xbridge-encoder-only": ("mgsm", "flores"), "translate-test": ("mgsm", "xlsum"), "sft": ("mgsm", "xlsum")}.get(
            system, ("mgsm", "xlsum", "flores"))  # translate-test translates with the NMT: its row would repeat nmt's

    @property
    def kernels(self) -> dict[str, str]:
        """The CPU kernels of this plan's jobs (train/machine.py: AVX2 everywhere, so two kinds of CPU agree). The
        fast variant runs pinned. The committed tables of the full experiments (main, ablation, options, the general
        world with its kept results) were computed before the kernels were pinned, with each library's native ones
        (an Intel Xeon, AVX-512): their jobs keep those kernels until each is re-run whole (the main job ~50
        CPU-minutes, the general world ~60 per LLM family), so that the committed numbers stay what the command
        computes there and a fresh clone reuses the kept results."""
        return kernel_env() if self.fast else {}

    def kept(self, folder: Path) -> str | None:
        """Where the evaluation of the run folder `folder` keeps its result beside the report (jobs.Job.cache), so
        that a report can be completed over several sessions or machines; None with bases from a run folder."""
        if self.bases:
            return None
        return str(self.results / "kept" / f"{folder.relative_to(self.out).as_posix()}.json.gz")

    def eval_langs(self) -> list[str]:
        langs = list(self.langs) if self.langs else register_languages(self.world_dir)
        return [ENGLISH, *langs]


def _langs(codes: list[str] | None) -> tuple[str, ...] | None:
    return tuple(codes) if codes else None


def step_generate(plan: Plan) -> Path:
    if not is_done(plan.world_dir):
        mark_data_done(plan.world_dir, generate(plan.world_dir, plan.world)["counts"])
    elif "data_sha256" not in done_info(plan.world_dir):  # generated before the data were checksummed
        mark_data_done(plan.world_dir, done_info(plan.world_dir))
    return plan.world_dir


# ------------------------------------------------------------------------------------------------ evaluation jobs
def trained_system_jobs(plan: Plan, system: str, seed: int, root: Path, nmt: str, llm: str, tag: str | None = None,
                        translation: bool = True, data: Path | None = None, **recipe) -> list[Job]:
    """Training chain + evaluation of one trained system for one seed; the evaluation job is `<tag>/s<seed>/eval`
    (tag: the system's name unless given; `translation`: XBridge is also scored on the held-out sentences; `data`:
    the folder of its stage1.jsonl / task.jsonl, `plan.data_dir` unless given; `recipe`: `bridge.xbridge_jobs`'
    keywords; encoder-only takes `stage1` only)."""
    name = f"{tag or system}/s{seed}"
    folder, data = root / f"seed{seed}", data or plan.data_dir
    if system == "xbridge-encoder-only":
        chain = encoder_only_jobs(name, data, nmt, llm, plan.schedule, folder, seed, **recipe)
    elif system == "sft":
        chain = sft_jobs(name, data, llm, plan.schedule, folder, seed)
    else:
        chain = xbridge_jobs(name, data, nmt, llm, plan.schedule, folder, seed, **recipe)
    benchmarks = tuple(b for b in plan.benchmarks(system) if translation or b != "flores")
    evaluation = Job(f"{name}/eval", evaluate, (system if system in ("xbridge-encoder-only", "sft") else "xbridge", benchmarks,
                                                str(plan.world_dir), str(folder / "eval"), plan.eval_langs(), plan.limit,
                                                {}, plan.general),
                     after=(name,), cost=15.0 * len(benchmarks) + 30.0 * ("flores" in benchmarks),
                     cache=plan.kept(root / f"seed{seed}"))
    return [*chain, evaluation]


# ------------------------------------------------------------------------------------------------ the main job
def main_job_parts(plan: Plan) -> tuple[list[Job], Callable[[dict], dict]]:
    """The main job's jobs (the world generated, the shipped bases verified), and what turns their results into
    the report: XBridge and encoder-only with every seed of `plan`, the untrained baselines once (the general
    world: and the SFT baseline, first in the list, as it is the longest single job)."""
    from .report import write_main_report  # noqa: PLC0415  (matplotlib only when a report is written)

    step_generate(plan)
    shipped.verify()
    nmt, llm = plan.base_folders()
    register_languages(plan.world_dir)  # scoring the summaries here needs the world's languages in eval's table
    langs, world, out = plan.eval_langs(), str(plan.world_dir), plan.out / "eval"
    jobs = []
    if plan.general:  # first: the longest single jobs (the LLM reads the raw question, 2-5x the bridge's tokens)
        for seed in plan.seeds:
            jobs += trained_system_jobs(plan, "sft", seed, plan.out / "sft", nmt, llm)
    untrained = {"direct": dict(llm=llm), "translate-test": dict(nmt=nmt, llm=llm), "nmt": dict(nmt=nmt)}
    jobs += [Job(f"{system}/eval", evaluate, (system, plan.benchmarks(system), world, str(out), langs, plan.limit, models,
                                              plan.general), cost=10.0 * len(plan.benchmarks(system)) + 10.0 * (system != "direct"),
                 cache=plan.kept(out / system))
             for system, models in untrained.items()]
    for seed in plan.seeds:
        jobs += trained_system_jobs(plan, "xbridge", seed, plan.out / "xbridge", nmt, llm)
        jobs += trained_system_jobs(plan, "xbridge-encoder-only", seed, plan.out / "encoder-only", nmt, llm)
        if plan.general:  # Table 1 scores the stage-1 bridges (the paper's): the task stages are not trained to translate
            for system, root in (("xbridge", plan.out / "xbridge"), ("xbridge-encoder-only", plan.out / "encoder-only")):
                stage1 = root / f"seed{seed}" / "stage1"
                jobs.append(Job(f"{system} (stage 1)/s{seed}/eval", evaluate,
                                (system, ("flores",), world, str(root / f"seed{seed}" / "eval-stage1"), langs, plan.limit,
                                 {}, True), after=(f"{system}/s{seed}/stage1",), cost=30.0, cache=plan.kept(stage1)))

    def report(results: dict) -> dict:
        trained = ("xbridge", "xbridge-encoder-only", "sft") if plan.general else ("xbridge", "xbridge-encoder-only")
        if plan.general:
            trained = (*trained, "xbridge (stage 1)", "xbridge-encoder-only (stage 1)")
        per_system = {system: [results[f"{system}/s{seed}/eval"] for seed in plan.seeds] for system in trained}
        per_system.update({system: [results[f"{system}/eval"]] for system in ("direct", "translate-test", "nmt")})
        losses = {f"xbridge/s{seed}/{stage}": results[f"xbridge/s{seed}/eval"]["losses"][stage]
                  for seed in plan.seeds for stage in ("stage1", "stage2", "stage3")}
        return write_main_report(plan, per_system, losses)

    return jobs, report


def main_job(plan: Plan, workers: int | None = None) -> dict:
    """The main job of one plan: its jobs, then its report."""
    return run_parts({"main": lambda: main_job_parts(plan)}, plan.results, "main", workers, plan.kernels)["main"]


Parts = Callable[[], tuple[list[Job], Callable[[dict], dict]]]


def run_parts(parts: dict[str, Parts], results: Path, name: str, workers: int | None = None,
              kernels: dict[str, str] | None = None) -> dict:
    """Several parts (each: a function giving its jobs and the report made of their results; a main job, the
    ablation, the sweep) as one pool of jobs, so no core idles while one part's last job runs; then each part's
    report, in the order given (a later report may read an earlier one's results). With several parts, job names
    carry their part's key. Wall times go to `results/run_info.json` under `name`; returns {key: report}.
    `kernels`: as jobs.run_jobs (the parts' Plan.kernels)."""
    clock = Stopwatch()
    built = {key: clock.run(f"prepare {key}", build) for key, build in parts.items()}
    tag = (lambda key, job_name: f"{key}:{job_name}") if len(parts) > 1 else (lambda key, job_name: job_name)
    jobs = [replace(job, name=tag(key, job.name), after=tuple(tag(key, dep) for dep in job.after))
            for key, (part_jobs, _) in built.items() for job in part_jobs]
    job_seconds: dict[str, float] = {}
    done = clock.run("train_and_evaluate", run_jobs, jobs, workers, name, job_seconds, kernels)
    reports = {key: clock.run(f"report {key}", report, {job.name: done[tag(key, job.name)] for job in built[key][0]
                                                         if tag(key, job.name) in done})  # kept: no training results
               for key, (_, report) in built.items()}
    write_run_info(results, name, clock.times, workers, job_seconds, kernels)
    return reports


def write_run_info(results: Path, name: str, times: dict, workers: int | None, job_seconds: dict | None = None,
                   kernels: dict[str, str] | None = None) -> None:
    """Wall times (of the steps, and of each job that ran: one thread each, beside `workers - 1` others) and the
    machine with the kernels the jobs used, beside the results (they differ between runs; the results do not)."""
    from .jobs import THREADS_PER_JOB, default_workers  # noqa: PLC0415

    path = results / "run_info.json"
    info = json.loads(path.read_text()) if path.exists() else {}
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    # CPU seconds of this process and every job and training run it waited for: what the run costs on cores of
    # its own, however busy the machine was (wall time on a shared machine is only an upper bound)
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    # an entry from before cpu_minutes was recorded: its wall minutes stand in (a bound from above of its CPU)
    if name in info and cpu < 0.1 * 60 * info[name].get("cpu_minutes", info[name].get("total_minutes", 0)):
        return  # a re-run that reused the finished jobs: keep the times of the run that did the work
    info[name] = dict(seconds=times, total_minutes=round(sum(times.values()) / 60, 1), cpu_minutes=round(cpu / 60, 1),
                      machine=machine(), workers=workers or default_workers(), threads_per_job=THREADS_PER_JOB,
                      job_kernels=(kernel_env() if kernels is None else kernels) or "native", job_seconds=job_seconds or {})
    path.write_text(json.dumps(info, indent=1) + "\n")


# ------------------------------------------------------------------------------------------------ the bases
# expected CPU seconds per training step at one thread (the progress bar's weights only)
STEP_COST = {"llm": 0.2, "nmt": 0.29, "nmt-general": 0.35}


def rebuild_bases(plan: Plan, cfg: BaseConfig | None = None, workers: int | None = None, compare: bool = True,
                  kinds: tuple[str, ...] = FIRST_BASES) -> dict:
    """Pretrain the bases `kinds` from scratch side by side (one job each), evaluate them, and compare with the
    shipped ones: metrics next to each other, and whether the weights are identical bit for bit."""
    cfg = cfg or BaseConfig()
    clock = Stopwatch()
    clock.run("generate", step_generate, plan)
    folders = {kind: plan.out / "bases" / kind for kind in kinds}
    world = str(plan.world_dir)
    jobs = []
    for kind in kinds:
        steps = cfg.nmt_steps if kind.startswith("nmt") else cfg.llm_steps
        jobs += [Job(kind, pretrain, (kind, world, str(folders[kind]), cfg), cost=steps * STEP_COST.get(kind, 0.3)),
                 Job(f"{kind}/eval", evaluate_base, (kind, world, plan.limit), after=(kind,), cost=40)]
    done = clock.run("pretrain_and_evaluate", run_jobs, jobs, workers, "bases")
    rebuilt = {kind: done[f"{kind}/eval"] for kind in folders}
    comparison = compare_with_shipped(folders, rebuilt, cfg) if compare else dict(
        rebuilt=rebuilt, shipped={}, identical={kind: None for kind in folders})
    from .report import write_bases_report  # noqa: PLC0415

    name = "bases" if set(kinds) <= set(FIRST_BASES) else "bases-general"
    everything = FIRST_BASES if name == "bases" else GENERAL_BASES
    last = plan.results / ("base_models.json" if name == "bases" else "base_models_general.json")
    if set(kinds) != set(everything) and last.exists():  # some bases rebuilt: the others keep the last report's rows
        comparison = with_last_rows(comparison, json.loads(last.read_text()), everything)
    write_bases_report(comparison, plan.results, name)
    write_run_info(plan.results, name if set(kinds) == set(everything) else f"{name} {' '.join(kinds)}", clock.times, workers)
    return comparison


def compare_with_shipped(folders: dict[str, Path], rebuilt: dict[str, dict], cfg: BaseConfig) -> dict:
    """The rebuilt bases' metrics beside the shipped ones', whether the weights are identical bit for bit, and
    what the recipe changed since the shipped base was trained (a base not shipped (yet): `identical` None)."""
    comparison = dict(rebuilt=rebuilt, shipped={}, identical={})
    for kind, folder in folders.items():
        try:
            comparison["shipped"][kind] = shipped.metrics(kind)
            comparison["identical"][kind] = compare_weights(folder, shipped.checkpoint(kind))
        except (FileNotFoundError, ValueError):
            comparison["identical"][kind] = None
            continue
        changed = changed_settings(comparison["shipped"][kind].get("config", {}), cfg, "nmt_" if kind.startswith("nmt") else "llm_")
        comparison["identical"][kind]["changed_settings"] = {k: list(v) for k, v in changed.items()}
    return comparison


def with_last_rows(comparison: dict, last_report: dict, everything: tuple[str, ...]) -> dict:
    """`comparison` of some bases, completed with the last report's rebuilt metrics of the others beside today's
    shipped ones (the last report's weight comparison was against the checkpoints shipped then)."""
    kept = [kind for kind in everything if kind not in comparison["rebuilt"]]
    merged = dict(comparison, rebuilt={kind: last_report["rebuilt"][kind] if kind in kept else comparison["rebuilt"][kind]
                                       for kind in everything},
                  shipped=dict(comparison["shipped"]), identical=dict(comparison["identical"]), from_last_report=kept)
    for kind in kept:
        merged["shipped"][kind] = shipped.metrics(kind)
        merged["identical"][kind] = None
    return merged


def evaluate_base(kind: str, world: str, limit: int | None, folder: str) -> dict:
    """A base's own metrics (a job): the LLM's English accuracy (a general LLM's: and its summaries' ROUGE-L), or
    the NMT's chrF per pair; plus its losses."""
    if kind.startswith("nmt"):
        result = base_eval.eval_nmt(folder, world, limit=limit)
    else:
        result = (base_eval.eval_llm if kind == "llm" else base_eval.eval_general_llm)(folder, world, limit=limit)
    result.pop("seconds", None)  # a metric must repeat; seconds do not
    result["losses"] = done_info(folder).get("losses")
    return result


def compare_weights(a: str | Path, b: str | Path) -> dict:
    """Bit-for-bit comparison of two checkpoints' weights: identical or not, and the largest difference."""
    from safetensors.torch import load_file  # noqa: PLC0415

    x, y = load_file(Path(a) / "model.safetensors"), load_file(Path(b) / "model.safetensors")
    if set(x) != set(y):
        return dict(identical=False, max_abs_diff=None, note=f"different tensors: {sorted(set(x) ^ set(y))[:5]}")
    diffs = {k: float((x[k].float() - y[k].float()).abs().max()) if x[k].shape == y[k].shape else float("inf") for k in x}
    worst = max(diffs, key=diffs.get)
    return dict(identical=all(x[k].shape == y[k].shape and bool((x[k] == y[k]).all()) for k in x),
                max_abs_diff=diffs[worst], worst_tensor=worst)


# ------------------------------------------------------------------------------------------------ shipping
REBUILD = {"nmt": "python -m miniworld bases", "llm": "python -m miniworld bases", "bridge": "python -m miniworld"}


def _base_description(kind: str) -> str:
    if kind.startswith("nmt"):
        return ("An NLLB-architecture translation model (`M2M100ForConditionalGeneration` + `NllbTokenizer`) between "
                "English and the six synthetic languages" + (", stories and summaries included" if kind != "nmt" else ""))
    if kind == "llm":
        return ("An English-only Llama-architecture LLM (`LlamaForCausalLM`) that solves the world's word problems "
                "step by step")
    family = kind.removeprefix("llm-")
    return (f"A general English LLM of the {family} family (`AutoModelForCausalLM`, model_type `{family}`: "
            f"{LLM_FAMILIES[family]}), pretrained on the world's English stories and instruction-tuned on its math "
            "problems and summaries with the harness's instructions")


def _base_summary(metrics: dict) -> str:
    if "chrf" in metrics:
        return "chrF per pair: " + ", ".join(f"{k} {v:.1f}" for k, v in metrics["chrf"].items())
    text = f"English accuracy {metrics['accuracy']:.1f}% on {metrics['n']} held-out problems"
    if "summary_rouge_l" in metrics:
        text += f"; English summary ROUGE-L {metrics['summary_rouge_l']:.1f} on {metrics['n_stories']} held-out stories"
    return text


def publish_checkpoints(plan: Plan, names: tuple[str, ...]) -> None:
    """Ship this run's bases (`bases`, or `bases --general`) or its seed-0 bridge (`bridge`) as the package's
    checkpoints, each with a model card and metrics; the bridge's config then names its bases `../nmt` and `../llm`."""
    bases = [n for n in names if n != "bridge"]
    if bases:
        report = "base_models.json" if set(bases) <= set(FIRST_BASES) else "base_models_general.json"
        measured = json.loads((plan.results / report).read_text())["rebuilt"]
    for kind in bases:
        folder = plan.out / "bases" / kind
        info = done_info(folder)
        steps = info["config"]["nmt_steps" if kind.startswith("nmt") else "llm_steps"]
        card = _card(kind, _base_description(kind), f"{info['params']:,} parameters, {steps} steps, seed "
                     f"{info['config']['seed']}, one thread; final training loss {info['train_loss']:.4f}",
                     _base_summary(measured[kind]), shipped.sha256(folder / "model.safetensors"))
        shipped.publish(kind, folder, card, dict(measured[kind], params=info["params"], config=info["config"]))
    if "bridge" in names:
        folder = plan.out / "xbridge" / f"seed{plan.seeds[0]}" / "stage3"
        results = json.loads((plan.results / "results.json").read_text())
        english = results["math"]["answer-en"]["xbridge"]
        training = (f"stage steps {plan.schedule.stage1}/{plan.schedule.stage2}/{plan.schedule.stage3}, batch "
                    f"{plan.schedule.batch}, lr {plan.schedule.lr}, seed {plan.seeds[0]}")
        metrics = ("English-answer accuracy over the non-English languages, mean over seeds "
                   f"{results['seeds']}: {english['avg (non-en)']['mean']:.1f}% (95% interval "
                   "[{:.1f}, {:.1f}]); every table: results/miniworld/README.md".format(*english['avg (non-en)']['ci95']))
        with safe_open(folder / "model.safetensors", "pt") as weights:  # a bridge-only checkpoint: the bridge alone
            n_bridge = sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())  # noqa: SIM118
        usage = "\n".join(["from miniworld.shipped import checkpoint", "from transformers import AutoModel, AutoProcessor",
                           "", 'repo = checkpoint("xbridge-miniworld/bridge")',
                           "model = AutoModel.from_pretrained(repo, trust_remote_code=True)",
                           "processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True)"])
        ready = plan.out / "bridge-to-ship"
        shutil.rmtree(ready, ignore_errors=True)
        shutil.copytree(folder, ready)
        config = json.loads((ready / "config.json").read_text())
        config.update(nmt_name_or_path="../nmt", llm_name_or_path="../llm")  # its shipped bases lie beside it
        (ready / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        write_bundle(ready)  # the remote code as it is now, as save_pretrained writes it
        card = bridge_card(XBridgeConfig.from_pretrained(ready), n_bridge, {
            "title": "xbridge-miniworld/bridge", "license": "apache-2.0", "tags": ["mini-world", "synthetic"], "base_model": [],
            "usage": usage, "notes": ["", "The stages 1-2-3 between the shipped `xbridge-miniworld/nmt` and "
                                      "`xbridge-miniworld/llm`, trained from scratch on CPU on the world's synthetic data.",
                                      "", *_provenance("bridge", training, metrics,
                                                       shipped.sha256(folder / "model.safetensors"))]})
        # a few held-out problems and sentences per language, in the world's test formats (the Space's examples)
        for sub in ("mgsm", "flores"):
            for path in sorted((plan.world_dir / "test" / sub).iterdir()):
                lines = path.read_text(encoding="utf-8").splitlines()[:5]
                (ready / "examples" / sub).mkdir(parents=True, exist_ok=True)
                (ready / "examples" / sub / path.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        shipped.publish("bridge", ready, card, dict(english, seed=plan.seeds[0]))


def _card(name: str, what: str, training: str, metrics: str, sha: str) -> str:
    """A mini-world base's card (what it is, how it was trained and measured, how to rebuild it)."""
    auto = "AutoModelForSeq2SeqLM" if name.startswith("nmt") else "AutoModelForCausalLM"
    return card_text(f"xbridge-miniworld/{name}", {"library_name": "transformers", "license": "apache-2.0",
                                                   "tags": ["xbridge", "mini-world", "synthetic"]}, [
        f"{what} of the mini-world, trained from scratch on CPU on the world's synthetic data (`miniworld/world.py`, "
        "seed 0).", "", *_provenance(name, training, metrics, sha), "",
        "```python", "from miniworld.shipped import checkpoint", f"from transformers import {auto}, AutoTokenizer",
        f"model = {auto}.from_pretrained(checkpoint(\"xbridge-miniworld/{name}\"))",
        f"tokenizer = AutoTokenizer.from_pretrained(checkpoint(\"xbridge-miniworld/{name}\"))", "```"])


def _provenance(name: str, training: str, metrics: str, sha: str) -> list[str]:
    return [f"- Training: {training}.", f"- Metrics: {metrics}.",
            f"- Rebuild: `{REBUILD.get(name, 'python -m miniworld bases --general')}` (from a checkout; it reports "
            "whether the rebuild is identical bit for bit).",
            f"- `model.safetensors` SHA-256: `{sha}` (every file: `miniworld/checkpoints/SHA256SUMS`)."]
