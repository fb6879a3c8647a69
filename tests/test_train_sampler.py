"""Length-grouped batches (deterministic under the seed, resume-safe) and the stage CLI's fp32 fallback where bf16
is not available."""

import logging
import os
import random

import pytest
import torch

from train.run import parse_args
from train.trainer import LengthGroupedBatchSampler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "train", "configs")


def _lengths(n=203, seed=0):
    rng = random.Random(seed)
    # MGSM-like mix: mostly short, a long tail (40 .. 400 tokens)
    return [int(40 + 360 * rng.random() ** 3) for _ in range(n)]


def _batches(order, bs):
    return [order[i:i + bs] for i in range(0, len(order), bs)]


def test_sampler_is_a_permutation_grouped_by_length_and_a_function_of_seed_and_epoch():
    lengths, bs = _lengths(), 4
    s = LengthGroupedBatchSampler(lengths, batch_size=bs, group_size=8, seed=42)
    first = list(s)
    assert sorted(first) == list(range(len(lengths)))
    assert list(LengthGroupedBatchSampler(lengths, bs, 8, seed=42)) == first  # same seed, same epoch: same order
    s.set_epoch(1)
    second = list(s)
    assert sorted(second) == list(range(len(lengths))) and second != first  # a new order every epoch
    s.set_epoch(0)
    assert list(s) == first  # epoch 0 again (what a resumed run does): the same order, whatever the global RNG
    torch.manual_seed(123)
    assert list(s) == first
    assert list(LengthGroupedBatchSampler(lengths, bs, 8, seed=43)) != first

    # Padding waste: the spread inside each micro-batch is far smaller than with random batches.
    def waste(order):
        return sum(bs * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in _batches(order, bs))

    random_order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    assert waste(first) < 0.25 * waste(random_order)
    batches = _batches(first, bs)
    # The longest record comes first (an out-of-memory shows at step 1); the short remainder stays last, so the
    # DataLoader's chunks of `bs` are exactly the groups.
    assert max(lengths) in [lengths[i] for i in batches[0]]
    assert len(batches[-1]) == len(lengths) % bs and all(len(b) == bs for b in batches[:-1])
    # Groups are shuffled: the micro-batches are not in decreasing length order.
    maxima = [max(lengths[i] for i in b) for b in batches[1:-1]]
    assert maxima != sorted(maxima, reverse=True) and maxima != sorted(maxima)


def test_sampler_rejects_a_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        LengthGroupedBatchSampler([3, 4], batch_size=0)


@pytest.mark.parametrize("config", ["stage1.yaml", "stage2.yaml", "stage3.yaml", "encoder_only_stage1.yaml",
                                    "encoder_only_stage2.yaml", "paper/nllb1.3b_llama3_8b.yaml"])
def test_recipes_group_by_length(config, tmp_path):
    command = "encoder-only" if "encoder_only" in config else "stage" + (config[5] if "stage" in config[:6] else "1")
    _, targs = parse_args(command, ["--config", os.path.join(CONFIGS, config), "--output_dir", str(tmp_path),
                                    "--use_cpu", "true"])
    assert targs.train_sampling_strategy == "group_by_length" and targs.length_column_name == "length"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback is for machines without a bf16 accelerator")
def test_recipe_trains_in_fp32_where_bf16_is_not_available(tmp_path, caplog):
    # The paper recipe asks for bf16; TrainingArguments alone would raise "Your setup doesn't support bf16/gpu".
    with caplog.at_level(logging.WARNING, logger="train"):
        xargs, targs = parse_args("stage1", ["--config", os.path.join(CONFIGS, "stage1.yaml"),
                                             "--output_dir", str(tmp_path)])
    assert not targs.bf16 and not targs.bf16_full_eval and xargs.base_dtype == "float32"
    notes = [r.getMessage() for r in caplog.records if "bf16 is not available" in r.getMessage()]
    assert len(notes) == 1 and "training in fp32" in notes[0]
    # Asking for CPU bf16 explicitly keeps it (TrainingArguments allows bf16 with use_cpu), and says nothing.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="train"):
        xargs, targs = parse_args("stage1", ["--config", os.path.join(CONFIGS, "stage1.yaml"),
                                             "--output_dir", str(tmp_path), "--use_cpu", "true"])
    assert targs.bf16 and xargs.base_dtype == "bfloat16"
    assert not [r for r in caplog.records if "bf16 is not available" in r.getMessage()]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback is for machines without a bf16 accelerator")
def test_documented_stage_command_runs_on_a_cpu_only_machine(tiny_bases, tmp_path):
    """`python -m train stage1 --config train/configs/stage1.yaml ...` as in train/README.md: no --bf16 false, no
    --use_cpu. It trains (in fp32) with the recipe's length-grouped batches."""
    import json

    from train.cli import main as cli_main

    rows = [{"src_text": "Habari" + " ya asubuhi" * (i % 4), "src_lang": "swh_Latn",
             "en_text": "Good" + " morning" * (3 - i % 4), "tgt_text": "Habari", "tgt_lang": "swh_Latn"}
            for i in range(6)]
    data = tmp_path / "tri.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    trainer = cli_main(["stage1", "--config", os.path.join(CONFIGS, "stage1.yaml"), "--nmt_name_or_path",
                        tiny_bases["nmt"], "--llm_name_or_path", tiny_bases["llm"], "--train_file", str(data),
                        "--output_dir", str(tmp_path / "out"), "--max_steps", "2", "--per_device_train_batch_size",
                        "2", "--total_batch_size", "2", "--save_strategy", "no", "--disable_tqdm", "true"])
    assert not trainer.args.bf16 and trainer.model.llm.dtype == torch.float32
    assert type(trainer._get_train_sampler()) is LengthGroupedBatchSampler
    assert trainer.state.global_step == 2 and all(v == v for v in trainer._last_logged.values())
