"""Every shipped YAML parses into the arguments its command expects (paper defaults included)."""

import glob
import os

import pytest
import yaml

from train.run import _stage_key, parse_args, stage_lambdas

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "train", "configs")


@pytest.mark.parametrize("command, config", [("stage1", "stage1.yaml"), ("stage2", "stage2.yaml"),
                                             ("stage3", "stage3.yaml"), ("encoder-only", "encoder_only_stage1.yaml"),
                                             ("encoder-only", "encoder_only_stage2.yaml")])
def test_stage_configs_hold_the_paper_defaults(command, config, tmp_path):
    # --use_cpu: TrainingArguments refuses bf16 without a GPU otherwise (CPU bf16 is allowed).
    xargs, targs = parse_args(command, ["--config", os.path.join(CONFIGS, config), "--output_dir", str(tmp_path),
                                        "--use_cpu", "true"])
    assert targs.learning_rate == 2e-5 and targs.warmup_steps == 50 and xargs.total_batch_size == 128
    assert targs.lr_scheduler_type == "linear" and targs.bf16 and xargs.base_dtype == "bfloat16"
    # the loss weights come from the stage itself (train/trainer.py STAGES), not repeated in the YAML
    assert (xargs.lambda_llm, xargs.lambda_dec, xargs.lambda_ot) == (None, None, None)
    expected = {"stage1": (1.0, 1.0, 6.0), "stage2": (1.0, 0.0, 0.0), "stage3": (0.0, 1.0, 6.0)}.get(command, (1.0, 0.0, 0.0))
    assert tuple(stage_lambdas(_stage_key(command, xargs), xargs)) == expected


def test_a_lambda_flag_overrides_the_stage_weight(tmp_path):
    xargs, _ = parse_args("stage3", ["--config", os.path.join(CONFIGS, "stage3.yaml"), "--output_dir", str(tmp_path),
                                     "--use_cpu", "true", "--lambda_ot", "0.0"])
    assert stage_lambdas("stage3", xargs) == [0.0, 1.0, 0.0]


def test_command_line_overrides_yaml(tmp_path):
    xargs, targs = parse_args("stage1", ["--config", os.path.join(CONFIGS, "stage1.yaml"), "--output_dir",
                                         str(tmp_path), "--learning_rate", "1e-3", "--ot_backend", "sinkhorn",
                                         "--use_cpu", "true"])
    assert targs.learning_rate == 1e-3 and xargs.ot_backend == "sinkhorn"


@pytest.mark.parametrize("recipe", sorted(glob.glob(os.path.join(CONFIGS, "paper", "*.yaml"))))
def test_paper_recipes_resolve_per_stage(recipe):
    for command, expected in (("stage1", (1.0, 1.0, 6.0)), ("stage2", (1.0, 0.0, 0.0)), ("stage3", (0.0, 1.0, 6.0))):
        xargs, targs = parse_args(command, ["--config", recipe, "--use_cpu", "true"])
        assert tuple(stage_lambdas(command, xargs)) == expected
        assert targs.output_dir.endswith(command) and targs.learning_rate == 2e-5
        assert xargs.nmt_name_or_path == "facebook/nllb-200-1.3B"
        if command != "stage1":
            assert xargs.model_name_or_path.endswith(f"stage{int(command[-1]) - 1}")


def test_accelerate_configs_are_valid_yaml():
    files = glob.glob(os.path.join(CONFIGS, "accelerate", "*.yaml"))
    kinds = {yaml.safe_load(open(f))["distributed_type"] for f in files}
    assert kinds == {"MULTI_GPU", "DEEPSPEED", "FSDP"}
    stages = {yaml.safe_load(open(f)).get("deepspeed_config", {}).get("zero_stage") for f in files}
    assert {2, 3} <= stages
