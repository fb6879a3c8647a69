"""Quantised frozen bases (issue 33): `--llm_quantization int8` / `--nmt_quantization int8` on CPU (torchao int8
weight-only; bitsandbytes is the CUDA path). Stage 1 trains through the int8 LLM (gradients reach the encoder-side
mapping), the NMT's cross-attention stays float (a bridge weight), and the saved bridge is the same bridge: the same
tensors and bytes as one trained on float bases, loadable on float or int8 bases."""

import json
import os

import pytest
import torch

from hub_xbridge import base_quantization
from modeling_xbridge import XBridgeForConditionalGeneration
from processing_xbridge import XBridgeProcessor
from tiny_bases import quick_train_args, seeded_bridge

QUESTIONS = ["Juma ana machungwa 3 na ananunua 4 zaidi.", "Mama alipika wali na maharage jana jioni."]


def test_a_bad_or_unavailable_quantization_says_what_would_work():
    with pytest.raises(ValueError, match=r"'int4' is not one of \('none', 'int8', 'nf4'\)"):
        base_quantization("int4")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="nf4 .* needs a CUDA GPU; on CPU use 'int8'"):
            base_quantization("nf4")
    assert base_quantization("none") is None


def test_int8_bases_train_stage1_and_save_the_same_bridge(tiny_bases, tmp_path):
    pytest.importorskip("torchao")
    from train.cli import main as cli_main

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = [{"src_text": q, "src_lang": "swh_Latn", "en_text": e, "tgt_text": q, "tgt_lang": "swh_Latn"}
            for q, e in zip(QUESTIONS, ["Juma has 3 oranges and buys 4 more.", "Mother cooked rice and beans."])]
    data = tmp_path / "tri.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    args = [os.path.join(root, "train", "configs", "stage1.yaml"), "--nmt_name_or_path", tiny_bases["nmt"],
            "--llm_name_or_path", tiny_bases["llm"], "--train_file", str(data)]
    runs = {}
    for kind in ("int8", "none"):
        trainer = cli_main(["stage1", "--config", *args, *quick_train_args(tmp_path / kind, 12), "--llm_quantization",
                            kind, "--nmt_quantization", kind])
        runs[kind] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        if kind == "int8":
            model = trainer.model
            assert type(model.llm.model.layers[0].mlp.up_proj.weight).__name__ == "Int8Tensor"
            assert type(model.nmt.model.encoder.layers[0].fc1.weight).__name__ == "Int8Tensor"
            cross = model.nmt.model.decoder.layers[0].encoder_attn.k_proj.weight
            assert type(cross) is torch.nn.Parameter and cross.requires_grad
    assert len(runs["int8"]) == 3 and runs["int8"][-1] < runs["int8"][0], runs
    # int8 rounding moves the losses a little (measured 0.2% at step 12), not the way they go
    assert abs(runs["int8"][-1] - runs["none"][-1]) < 0.05 * runs["none"][-1], runs
    from safetensors.torch import load_file

    int8, plain = load_file(tmp_path / "int8" / "model.safetensors"), load_file(tmp_path / "none" / "model.safetensors")
    assert {k: (v.shape, v.dtype) for k, v in int8.items()} == {k: (v.shape, v.dtype) for k, v in plain.items()}
    assert os.path.getsize(tmp_path / "int8" / "model.safetensors") == os.path.getsize(tmp_path / "none" / "model.safetensors")
    # the int8-trained bridge on float bases and on int8 bases again: both generate, close to each other
    processor = XBridgeProcessor.from_pretrained(tmp_path / "int8")
    batch = processor(QUESTIONS, src_lang="swh_Latn")
    logits = {}
    for kind in ("none", "int8"):
        model = XBridgeForConditionalGeneration.from_pretrained(tmp_path / "int8", llm_quantization=kind).eval()
        ids = model.generate(**batch, tgt_lang="swh_Latn", max_new_tokens=4, do_sample=False)
        assert ids.shape[0] == len(QUESTIONS)
        with torch.no_grad():
            logits[kind] = model(**batch).llm_logits[:, -1].float()
    rel = (logits["int8"] - logits["none"]).norm() / logits["none"].norm()
    assert rel < 0.15, rel  # measured 0.037 (the tiny random LLM's weights are large: init 0.2); other bases: ~1


def test_a_full_checkpoint_refuses_quantised_bases(tiny_bases, tmp_path):
    model = seeded_bridge(XBridgeForConditionalGeneration.from_bases(tiny_bases["nmt"], tiny_bases["llm"]))
    model.save_pretrained(tmp_path / "full", bridge_only=False)
    with pytest.raises(ValueError, match="quantised bases load with a bridge-only checkpoint"):
        XBridgeForConditionalGeneration.from_pretrained(tmp_path / "full", llm_quantization="int8")
