"""The XBridge stages and the encoder-only baseline, trained through `python -m train` (exactly the user's
command), one subprocess per stage, each writing into its own folder; a `COMPLETED` marker there makes a re-run
skip it. Every run gets its seed (`--seed`: bridge initialisation and data order) and one thread (jobs.JOB_ENV);
its log goes to `<folder>/train.log`.

`stage_jobs` turns a recipe into jobs.Job chains (stage 1 -> 2 -> 3) that jobs.run_jobs schedules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from . import experiments
from .jobs import JOB_ENV, Job
from .runs import mark_done, reuse
from .world import LLM_PROMPT

# The bridge's prompt is the LLM's own training prompt around the query.
BRIDGE_PROMPT = LLM_PROMPT.replace("{question}", "{query}")
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StageSchedule:
    """Steps and optimiser settings of the bridge stages on CPU (the paper's lr 2e-5 x 3 epochs is for 8B
    models and millions of records; tiny mapping layers need a high lr and a few hundred steps)."""

    stage1: int = 200
    stage2: int = 800  # 200 -> 400 -> 800 steps gave 73.7 -> 87.3 -> 94.0% on one seed (ANALYSIS.md)
    stage3: int = 200
    batch: int = 32
    lr: float = 5e-3  # 2e-3 -> 5e-3 lifted xbridge from 29% to 42% at the same steps (ANALYSIS.md)
    warmup: int = 10
    # The encoder-only baseline (MindMerger's design), stage 1 and 2. Owed (issue 30, item 2): as many steps as
    # XBridge's encoder side (200 + 800) at the same lr; the committed main table was trained at 100 + 100 (8%).
    enc_only1: int = 100
    enc_only2: int = 100
    # The released code also puts the raw question in the LLM prompt. This LLM cannot read the synthetic scripts
    # (English BPE: bytes) and misreads the Latin-script one, so there it is noise: without it, 41.7% -> 73.7%
    # (ANALYSIS.md). The LLM then reads the question only through the encoder map, under an English instruction.
    source_in_prompt: bool = False
    # the general world (issue 13): the LLM's own chat template around the task instruction (records carry it), and
    # room for its longer answers ("Let's think step by step. ...", byte-level digits)
    chat_template: bool = False
    max_tokens: int = 96

    @classmethod
    def fast(cls) -> StageSchedule:
        """The CI variant's schedule (miniworld/configs/fast.yaml, which says why)."""
        return experiments.section("fast", "schedule", cls=cls)

    def scaled(self, fraction: float) -> StageSchedule:
        """The same recipe with every stage's steps times `fraction` (the ablation's shorter schedule)."""
        cut = lambda steps: max(10, round(steps * fraction))  # noqa: E731
        return replace(self, stage1=cut(self.stage1), stage2=cut(self.stage2), stage3=cut(self.stage3),
                       enc_only1=cut(self.enc_only1), enc_only2=cut(self.enc_only2))


def trainer_flags(schedule: StageSchedule, steps: int, out: Path, train_file: Path, seed: int) -> list[str]:
    """The Trainer's settings every training run here shares (the bridge stages and the SFT baseline)."""
    return ["--train_file", str(train_file), "--output_dir", str(out), "--max_steps", str(steps), "--seed", str(seed),
            "--per_device_train_batch_size", str(schedule.batch), "--learning_rate", str(schedule.lr),
            "--warmup_steps", str(schedule.warmup), "--lr_scheduler_type", "cosine", "--bf16", "false",
            "--use_cpu", "true", "--save_strategy", "no", "--logging_steps", str(max(1, steps // 10)),
            "--report_to", "none", "--dataloader_num_workers", "0", "--disable_tqdm", "true",
            "--use_chat_template", str(schedule.chat_template).lower()]


def common_flags(schedule: StageSchedule, steps: int, out: Path, train_file: Path, seed: int) -> list[str]:
    return [*trainer_flags(schedule, steps, out, train_file, seed), "--total_batch_size", str(schedule.batch),
            "--base_dtype", "float32",
            *[arg for side in ("source", "answer", "target") for arg in (f"--max_{side}_tokens", str(schedule.max_tokens))],
            "--prompt_template", BRIDGE_PROMPT, "--source_in_prompt", str(schedule.source_in_prompt).lower()]


def loss_history(folder: Path) -> dict[str, list[float]]:
    """Logged loss terms over training, from the Trainer's `trainer_state.json`."""
    state = json.loads((folder / "trainer_state.json").read_text())
    terms: dict[str, list[float]] = {}
    for entry in state["log_history"]:
        for key in ("loss", "ce_llm", "ce_dec", "ot"):
            if key in entry:
                terms.setdefault(key, []).append(entry[key])
    return terms


def flag_values(command: list[str]) -> dict[str, str]:
    """`{"--flag": value}` of a command line (the words before the first flag under ""), as HfArgumentParser
    reads it: `--a-b c` and `--a_b=c` are both `{"--a_b": "c"}`."""
    values, key = {"": ""}, ""
    for word in command:
        if word.startswith("--"):
            key, _, value = word.partition("=")
            key = "--" + key[2:].replace("-", "_")
            values[key] = value
        else:
            values[key] = f"{values[key]} {word}".strip()
    return values


def _changed_flags(done: list[str] | None, now: list[str]) -> dict:
    """{flag: (then, now)} between two command lines (empty: the same command)."""
    if done == now:
        return {}
    before, after = flag_values(done or []), flag_values(now)
    return {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


def train(out: str, module_args: list[str], flags: list[str], *_after) -> str:
    """`python -m <module_args> <flags>` into `out` unless it is already complete; returns `out`. A job of
    jobs.run_jobs (`_after`: the results of the jobs it waited for, already named in `flags`)."""
    out_path = Path(out)
    cmd = [sys.executable, "-m", *module_args, *flags]
    if reuse(out_path, "command", cmd[1:], _changed_flags):
        return out
    out_path.mkdir(parents=True, exist_ok=True)
    with open(out_path / "train.log", "w", encoding="utf-8") as log:
        result = subprocess.run(cmd, cwd=REPO, env={**os.environ, **JOB_ENV}, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode:
        tail = (out_path / "train.log").read_text(encoding="utf-8")[-3000:]
        raise RuntimeError(f"{' '.join(cmd[1:4])} -> {out} failed ({result.returncode}); log tail:\n{tail}")
    mark_done(out_path, dict(command=cmd[1:], losses=loss_history(out_path)))
    return out


# Expected seconds per step at 1 thread (batch 32), for the progress bar's weights only.
_COST = {"stage1": 0.7, "stage2": 0.35, "stage3": 0.3, "stage23": 0.8, "enc1": 0.4, "enc2": 0.35, "sft": 0.6}


def xbridge_jobs(name: str, world: Path, nmt: str, llm: str, schedule: StageSchedule, root: Path, seed: int,
                 ot_backend: str = "relaxed", lambda_ot: float | None = None, merged: bool = False,
                 defect: bool = False, stage1: Path | None = None) -> list[Job]:
    """Stages 1 -> 2 -> 3 (or 1 -> merged 2+3; or a stage 1 with the decoder side frozen) as a job chain; the
    last job is named `name` and returns the final bridge's folder. `stage1`: stage 1's folder, when another chain
    shares it (the same command there: jobs.run_jobs runs it once)."""
    extra = ["--ot_backend", ot_backend] + (["--lambda_ot", str(lambda_ot)] if lambda_ot is not None else [])
    bases = ["--nmt_name_or_path", nmt, "--llm_name_or_path", llm]
    scale = schedule.batch / 32
    s1_cmd = ["miniworld.variants", "stage1-defect"] if defect else ["train", "stage1"]
    s1 = stage1 or root / "stage1"
    jobs = [Job(f"{name}/stage1", train, (str(s1), s1_cmd + ["--config", "train/configs/stage1.yaml"],
                common_flags(schedule, schedule.stage1, s1, world / "stage1.jsonl", seed) + bases + extra),
                cost=schedule.stage1 * _COST["stage1"] * scale)]
    if merged:
        s23 = root / "stage23"
        jobs.append(Job(name, train, (str(s23), ["miniworld.variants", "stage23", "--config", "train/configs/stage3.yaml"],
                        common_flags(schedule, schedule.stage2 + schedule.stage3, s23, world / "task.jsonl", seed)
                        + ["--model_name_or_path", str(s1), "--lambda_llm", "1.0"] + extra),
                        after=(f"{name}/stage1",), cost=(schedule.stage2 + schedule.stage3) * _COST["stage23"] * scale))
        return jobs
    s2, s3 = root / "stage2", root / "stage3"
    jobs.append(Job(f"{name}/stage2", train, (str(s2), ["train", "stage2", "--config", "train/configs/stage2.yaml"],
                    common_flags(schedule, schedule.stage2, s2, world / "task.jsonl", seed) + ["--model_name_or_path", str(s1)]),
                    after=(f"{name}/stage1",), cost=schedule.stage2 * _COST["stage2"] * scale))
    jobs.append(Job(name, train, (str(s3), ["train", "stage3", "--config", "train/configs/stage3.yaml"],
                    common_flags(schedule, schedule.stage3, s3, world / "task.jsonl", seed)
                    + ["--model_name_or_path", str(s2)] + extra),
                    after=(f"{name}/stage2",), cost=schedule.stage3 * _COST["stage3"] * scale))
    return jobs


def encoder_only_jobs(name: str, world: Path, nmt: str, llm: str, schedule: StageSchedule, root: Path, seed: int,
                      stage1: Path | None = None) -> list[Job]:
    """The MindMerger-design baseline: encoder side only, translation pairs then task data, CE_llm (`stage1`: as
    in `xbridge_jobs`)."""
    e1, e2 = stage1 or root / "stage1", root / "stage2"
    scale = schedule.batch / 32
    return [
        Job(f"{name}/stage1", train, (str(e1), ["train", "encoder-only", "--config", "train/configs/stage1.yaml",
                                                "--encoder_stage", "1"],
                                      common_flags(schedule, schedule.enc_only1, e1, world / "stage1.jsonl", seed)
                                      + ["--nmt_name_or_path", nmt, "--llm_name_or_path", llm]),
            cost=schedule.enc_only1 * _COST["enc1"] * scale),
        Job(name, train, (str(e2), ["train", "encoder-only", "--config", "train/configs/stage2.yaml", "--encoder_stage", "2"],
                          common_flags(schedule, schedule.enc_only2, e2, world / "task.jsonl", seed)
                          + ["--model_name_or_path", str(e1)]),
            after=(f"{name}/stage1",), cost=schedule.enc_only2 * _COST["enc2"] * scale),
    ]


def sft_jobs(name: str, world: Path, llm: str, schedule: StageSchedule, root: Path, seed: int) -> list[Job]:
    """The SFT baseline (the general world): LoRA on the LLM alone (`python -m train sft`), on the same task records
    as stages 2-3 for as many steps as stage 2, prompted with the LLM's chat template and the records' instructions;
    math answers in English, summaries in the story's language (as XL-Sum's)."""
    out = root / "sft"
    flags = [*trainer_flags(replace(schedule, chat_template=True), schedule.stage2, out, world / "task.jsonl", seed),
             "--llm_name_or_path", llm, "--gradient_accumulation_steps", "1", "--in_language_tasks", "summarize",
             "--max_length", str(4 * schedule.max_tokens),  # the raw question in the LLM's own tokens
             "--gradient_checkpointing", "false"]  # TRL's default trades 1.6x the time for memory this needs not
    return [Job(name, train, (str(out), ["train", "sft", "--config", "train/configs/sft.yaml"], flags),
                cost=schedule.stage2 * _COST["sft"] * schedule.batch / 32)]
