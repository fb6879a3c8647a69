"""Trainable-parameter counts and bridge checkpoint size at the real shapes, next to the full model.

Built on the `meta` device: shapes without memory, so the 1.3B + 7B composite costs nothing to count.
"""

import os
import tempfile

import torch

from .common import REAL_SHAPES, XBridgeForConditionalGeneration, real_config


def count(shape: str) -> dict:
    with torch.device("meta"):
        model = XBridgeForConditionalGeneration(real_config(shape))
    total = sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    bridge = sum(p.numel() for n, p in model.named_parameters() if model.is_bridge_parameter(n))
    stages = {}
    for stage in model.STAGE_TRAINABLE:
        names = set(model.set_stage(stage))
        stages[f"stage{stage}"] = sum(p.numel() for n, p in model.named_parameters() if n in names)
    return {
        "total_params": total,
        "nmt_params": sum(p.numel() for p in model.nmt.parameters()),
        "llm_params": sum(p.numel() for p in model.llm.parameters()),
        "bridge_params": bridge,
        "trainable_params": stages,
        "bridge_fp32_bytes": bridge * 4,
        "full_bf16_bytes": total * 2,
        "full_fp32_bytes": total * 4,
        "bridge_share": bridge / total,
    }


def all_sizes() -> dict:
    return {shape: count(shape) for shape in REAL_SHAPES}


def saved_bridge_bytes(model) -> int:
    """Size on disk of a real bridge-only checkpoint (safetensors) of `model`, to check the computed size."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return os.path.getsize(os.path.join(tmp, "model.safetensors"))
