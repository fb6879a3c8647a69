"""Every trainer from the CLI on tiny offline bases: losses finite and decreasing on a fixed small batch, only the
stage's parameters change, stages chain through their output folders."""

import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from train.cli import main as cli_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny models on a shared 2-core machine: one thread per process is several times faster than two.
torch.set_num_threads(1)
STEPS = 24


def _flores(lang, n, start=0):
    with open(os.path.join(ROOT, "data", "flores200_devtest", f"{lang}.devtest"), encoding="utf-8") as f:
        return [line[:70] for line in f.read().splitlines()[start:start + n]]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two trilingual and two task records, mixed target languages: one fixed batch of 2 per step."""
    d = tmp_path_factory.mktemp("data")
    sw, en, de, fr = (_flores(lang, 4) for lang in ("swh_Latn", "eng_Latn", "deu_Latn", "fra_Latn"))
    tri = [{"src_text": sw[0], "src_lang": "swh_Latn", "en_text": en[0], "tgt_text": de[0], "tgt_lang": "deu_Latn"},
           {"src_text": fr[1], "src_lang": "fra_Latn", "en_text": en[1], "tgt_text": sw[1], "tgt_lang": "swh_Latn"}]
    task = [{"question": sw[2], "src_lang": "swh_Latn", "answer_en": en[2], "answer_tgt": sw[3][:40],
             "tgt_lang": "swh_Latn", "instruction": "Answer the question."},
            {"question": de[3], "src_lang": "deu_Latn", "answer_en": en[3], "answer_tgt": de[2][:40],
             "tgt_lang": "deu_Latn"}]
    for name, rows in (("tri.jsonl", tri), ("task.jsonl", task)):
        with open(d / name, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return {"tri": str(d / "tri.jsonl"), "task": str(d / "task.jsonl")}


class Snapshot(TrainerCallback):
    """Keeps the weights before the first step, to compare with the weights after training."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}


def common(out, steps=STEPS, lr="3e-3"):
    return ["--output_dir", str(out), "--max_steps", str(steps), "--per_device_train_batch_size", "2",
            "--total_batch_size", "2", "--learning_rate", lr, "--warmup_steps", "0", "--bf16", "false",
            "--base_dtype", "float32", "--logging_steps", "4", "--save_strategy", "no", "--use_cpu", "true",
            "--disable_tqdm", "true", "--report_to", "none"]


def run_stage(command, config, args):
    snap = Snapshot()
    trainer = cli_main([command, "--config", os.path.join(ROOT, "train", "configs", config), *args], callbacks=[snap])
    logs = [h for h in trainer.state.log_history if "loss" in h]
    after = {n: p.detach() for n, p in trainer.model.named_parameters()}
    changed = {n for n in after if not torch.equal(after[n], snap.before[n])}
    return trainer, logs, changed


def check_losses(logs, terms, steps=STEPS):
    assert len(logs) == steps // 4
    for key in ("loss", *terms):
        values = [h[key] for h in logs]
        assert all(math.isfinite(v) for v in values), (key, values)
    first, last = logs[0]["loss"], logs[-1]["loss"]
    assert last < first, [h["loss"] for h in logs]


def prefixes(names):
    return {"cross_attention" if ".encoder_attn" in n else n.split(".")[0] for n in names}


@pytest.fixture(scope="module")
def stage1(tiny_bases, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    trainer, logs, changed = run_stage("stage1", "stage1.yaml", ["--nmt_name_or_path", tiny_bases["nmt"],
                                       "--llm_name_or_path", tiny_bases["llm"], "--train_file", data["tri"],
                                       *common(out)])
    return out, trainer, logs, changed


def test_stage1_trains_the_mappings_and_cross_attention_with_three_losses(stage1):
    out, trainer, logs, changed = stage1
    check_losses(logs, ("ce_llm", "ce_dec", "ot"))
    assert logs[-1]["ot"] < logs[0]["ot"] and logs[-1]["ce_dec"] < logs[0]["ce_dec"]
    assert prefixes(changed) == {"enc_map", "boundary", "dec_map", "cross_attention"}
    model = trainer.model
    # Exactly the declared trainable set moved, and every decoder layer's cross-attention + its norm did.
    assert changed == set(model.trainable_parameter_names())
    assert any("encoder_attn_layer_norm" in n for n in changed)
    assert not any(n.startswith("llm.") or ".self_attn." in n or ".fc1." in n for n in changed)
    saved = load_file(os.path.join(out, "model.safetensors"))  # bridge-only checkpoint
    assert set(saved) == {n for n, _ in model.named_parameters() if model.is_bridge_parameter(n)}
    assert json.load(open(os.path.join(out, "config.json")))["stage"] == 1
    card = open(os.path.join(out, "README.md")).read()
    assert "training stage: 1" in card and "final ce_dec" in card and "tri.jsonl (2 records" in card


@pytest.fixture(scope="module")
def stage2(stage1, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage2")
    return (out, *run_stage("stage2", "stage2.yaml", ["--model_name_or_path", str(stage1[0]),
                                                      "--train_file", data["task"], *common(out)]))


def test_stage2_trains_only_the_encoder_side_on_llm_ce(stage1, stage2):
    out, trainer, logs, changed = stage2
    check_losses(logs, ("ce_llm",))
    assert "ce_dec" not in logs[0] and "ot" not in logs[0]
    assert prefixes(changed) == {"enc_map", "boundary"}
    # It started from stage 1's bridge: the decoder side is stage 1's, bit for bit.
    s1 = stage1[1].model.state_dict()
    s2 = trainer.model.state_dict()
    for name in s2:
        if name.startswith("dec_map") or ".encoder_attn" in name:
            assert torch.equal(s1[name], s2[name]), name


def test_stage3_trains_only_the_decoder_side_on_decoder_ce_and_ot(stage2, data, tmp_path):
    # Also the real-run precision setup: frozen bases in bf16, what trains in fp32.
    trainer, logs, changed = run_stage("stage3", "stage3.yaml", ["--model_name_or_path", str(stage2[0]),
                                          "--train_file", data["task"], "--ot_backend", "sinkhorn",
                                          "--source_in_prompt", "false", *common(tmp_path), "--base_dtype", "bfloat16"])
    check_losses(logs, ("ce_dec", "ot"))
    # --source_in_prompt false: the LLM prompt holds the instruction only, in training and in the saved processor
    record = json.loads(open(data["task"]).readline())
    prompt = trainer.data_collator.processor.build_prompt(record["question"], record["instruction"])
    assert record["instruction"] in prompt and record["question"] not in prompt
    assert json.load(open(os.path.join(tmp_path, "processor_config.json")))["source_in_prompt"] is False
    assert prefixes(changed) == {"dec_map", "cross_attention"}
    params = dict(trainer.model.named_parameters())
    assert all(params[n].dtype == torch.float32 for n in trainer.model.trainable_parameter_names())
    assert params["llm.model.embed_tokens.weight"].dtype == torch.bfloat16
    assert params["nmt.model.decoder.layers.0.fc1.weight"].dtype == torch.bfloat16
    # CE_llm weighs nothing in stage 3, so the model skips it: loss = 1.0 * ce_dec + 6.0 * ot (up to the logging average).
    h = logs[-1]
    assert "ce_llm" not in h
    assert h["loss"] == pytest.approx(h["ce_dec"] + 6.0 * h["ot"], rel=1e-3)
    s2 = stage2[1].model.state_dict()
    for name, value in trainer.model.state_dict().items():
        if name.startswith(("enc_map", "boundary")):
            assert torch.equal(s2[name], value), name


def test_encoder_only_baseline_two_stages(tiny_bases, data, tmp_path):
    """Also the bridge options reach the model config from the CLI (here: all encoder layers fused)."""
    out1 = tmp_path / "enc1"
    trainer, logs, changed = run_stage("encoder-only", "encoder_only_stage1.yaml", [
        "--nmt_name_or_path", tiny_bases["nmt"], "--llm_name_or_path", tiny_bases["llm"],
        "--train_file", data["tri"], "--encoder_fusion", "global_softmax", *common(out1, steps=12)])
    check_losses(logs, ("ce_llm",), steps=12)
    assert trainer.model.config.encoder_fusion == "global_softmax"
    assert prefixes(changed) == {"enc_map", "boundary", "encoder_fusion"} and "ce_dec" not in logs[0]
    _, logs, changed = run_stage("encoder-only", "encoder_only_stage2.yaml", [
        "--model_name_or_path", str(out1), "--train_file", data["task"], *common(tmp_path / "enc2", steps=4)])
    assert prefixes(changed) == {"enc_map", "boundary", "encoder_fusion"}


def test_sft_baseline_trains_lora_only(tiny_bases, data, tmp_path):
    snap = Snapshot()
    trainer = cli_main(["sft", "--config", os.path.join(ROOT, "train", "configs", "sft.yaml"),
                        "--llm_name_or_path", tiny_bases["llm"], "--train_file", data["task"],
                        "--output_dir", str(tmp_path), "--max_steps", "8", "--per_device_train_batch_size", "2",
                        "--gradient_accumulation_steps", "1", "--learning_rate", "1e-2", "--warmup_steps", "0",
                        "--bf16", "false", "--logging_steps", "2", "--save_strategy", "no", "--use_cpu", "true",
                        "--disable_tqdm", "true", "--max_length", "128"], callbacks=[snap])
    logs = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert all(math.isfinite(v) for v in logs) and logs[-1] < logs[0]
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), snap.before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert os.path.exists(tmp_path / "adapter_config.json")


def test_sft_in_chat_template_answers_summaries_in_language_and_eval_prompts_it_alike(tiny_bases, data, tmp_path):
    """`--use_chat_template --in_language_tasks summarize` (the general mini-world's SFT baseline): each record is
    trained on exactly the prompt eval's `sft` system builds, summaries answer in the record's language, math in
    English; the adapter folder says how it was prompted, and eval reads that back."""
    from eval.systems import SFTSystem
    from processing_xbridge import chat_prompt

    rows = [json.loads(line) for line in open(data["task"], encoding="utf-8")]
    rows = [{**rows[0], "task": "summarize"}, {**rows[1], "task": "math", "instruction": "Solve it."}]
    task_file = tmp_path / "task.jsonl"
    task_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "sft"
    trainer = cli_main(["sft", "--config", os.path.join(ROOT, "train", "configs", "sft.yaml"),
                        "--llm_name_or_path", tiny_bases["llm"], "--train_file", str(task_file),
                        "--output_dir", str(out), "--max_steps", "1", "--per_device_train_batch_size", "2",
                        "--gradient_accumulation_steps", "1", "--bf16", "false", "--save_strategy", "no",
                        "--use_cpu", "true", "--disable_tqdm", "true", "--max_length", "512",
                        "--use_chat_template", "true", "--in_language_tasks", "summarize"])
    tok = trainer.processing_class
    trained = sorted(tok.decode(r["input_ids"]) for r in trainer.train_dataset)
    expected = sorted(chat_prompt(tok, r["question"], r.get("instruction")) + " "
                      + r["answer_tgt" if r["task"] == "summarize" else "answer_en"] + tok.eos_token for r in rows)
    assert trained == expected
    assert json.loads((out / "sft_prompt.json").read_text())["use_chat_template"] is True
    system = SFTSystem(model=str(out), device="cpu", dtype="float32")
    assert system.llm.chat and system.llm.prompt("q", "Solve it.") == chat_prompt(tok, "q", "Solve it.")
    (out / "sft_prompt.json").unlink()  # an adapter trained before the file existed: the plain template, as before
    assert not SFTSystem(model=str(out), device="cpu", dtype="float32").llm.chat
    with pytest.raises(ValueError, match="no `task` field"):
        cli_main(["sft", "--llm_name_or_path", tiny_bases["llm"], "--train_file", data["task"], "--output_dir",
                  str(tmp_path / "x"), "--in_language_tasks", "summarize", "--use_cpu", "true"])


def test_cli_errors_and_help(capsys, data, tmp_path):
    with pytest.raises(ValueError, match="give --model_name_or_path"):
        cli_main(["stage2", "--train_file", data["task"], "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="--nmt_name_or_path and --llm_name_or_path"):
        cli_main(["stage1", "--train_file", data["tri"], "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        cli_main(["stage1", "--help"])
    out = capsys.readouterr().out
    for flag in ("--ot_backend", "--nmt_name_or_path", "--model_name_or_path", "--train_file", "--dataset_name",
                 "--max_steps", "--push_to_hub", "--hub_strategy", "--resume_from_checkpoint"):
        assert flag in out, flag


def test_gradient_checkpointing_gives_the_same_gradients(tiny_bridge, data):
    """`--gradient_checkpointing true` recomputes the frozen LLM's activations; the bridge's gradients must not
    change (the LLM is frozen, so only input gradients flow through the checkpointed layers)."""
    from train.trainer import XBridgeCollator

    model, processor = tiny_bridge
    model.set_stage(1)
    model.set_ot_loss(__import__("train.ot", fromlist=["x"]).relaxed_ot_loss)
    with open(data["tri"], encoding="utf-8") as f:
        batch = XBridgeCollator(processor, "stage1")([json.loads(line) for line in f])
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        model.zero_grad()
        model(**batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)
