"""Will it fit? A memory model of XBridge training per GPU (issue 33): `python -m bench --part memory`.

Peak memory of one stage-1 step (the stage with every term: the LLM's loss through the frozen LLM, the decoder's
loss, OT) = frozen base weights + the trainable bridge's state + activations:
- weights: parameter counts of the real configs (bench/configs, built on the meta device: exact), 2 bytes (bf16);
  4-bit LLM: its Linear weights at 0.53 bytes (NF4 with double-quantised absmax), embeddings and LM head bf16;
  FSDP / ZeRO-3 over 8 GPUs: the bases and the bridge's state sharded 8 ways;
- bridge: fp32 weights, gradients and Adam's two moments, 16 bytes a trainable parameter (DDP: on every GPU);
- activations: a linear model in the shapes, fitted to the peak tensor memory of a training step measured exactly
  on CPU (`common.TensorMemoryTracker`) at small shapes of the same families; its terms are elements per token per
  layer of the LLM (x hidden, x intermediate) and of the NMT decoder, and the two vocabulary heads (x vocabulary
  x labelled tokens). Measured in float32 and halved for bf16. Validated on held-out shapes (error printed; the
  issue's bar: 15%). Attention is taken as linear in length (flash / memory-efficient attention on GPU); CPU
  shapes keep one length so its quadratic attention does not enter the fit.
"""

import json
from pathlib import Path

import numpy as np
import torch

from modeling_xbridge import XBridgeForConditionalGeneration

from .common import TensorMemoryTracker, bridge_config, read_config
from .training import make_train_batch

NMTS = {"NLLB 600M": "nllb-200-distilled-600M", "NLLB 1.3B": "nllb-200-1.3B", "NLLB 3.3B": "nllb-200-3.3B"}
LLMS = {"Qwen2.5 0.5B": "qwen2.5-0.5b", "Qwen2.5 7B": "qwen2.5-7b", "Llama 3 8B": "llama-3-8b", "Llama 3 70B": "llama-3-70b"}
SETTINGS = ("DDP bf16", "4-bit LLM", "FSDP/ZeRO-3 x8")
GIB = 2 ** 30
# What one GPU holds per step: the paper's batch of 128 over 8 GPUs, and a small per-GPU batch for one 24 GB GPU
# (with gradient accumulation for the same total).
WORKLOADS = {"paper (16 / GPU, src 128, answer 256, target 256)": dict(batch=16, src=128, answer=256, target=256),
             "one 24 GB GPU (2 / step, src 128, answer 256, target 256)": dict(batch=2, src=128, answer=256, target=256)}
NF4_BYTES = 0.53


def parameter_counts(nmt: dict, llm: dict) -> dict:
    """Exact counts from the configs (the model built on the meta device): the bases' frozen parameters, the
    bridge's trainable ones (stage 1: maps, boundary, decoder cross-attention), the LLM's quantisable Linear weights."""
    with torch.device("meta"):
        model = XBridgeForConditionalGeneration(bridge_config(nmt, llm))
    model.set_stage(1)
    seen, out = set(), dict(nmt_frozen=0, llm_frozen=0, bridge=0, llm_linear=0)
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        if p.requires_grad:
            out["bridge"] += p.numel()
        else:
            out["nmt_frozen" if name.startswith("nmt.") else "llm_frozen"] += p.numel()
    head = model.llm.get_output_embeddings()
    out["llm_linear"] = sum(m.weight.numel() for m in model.llm.modules()
                            if isinstance(m, torch.nn.Linear) and m is not head)
    return out


def _features(nmt: dict, llm: dict, w: dict, attention_matrices: bool = True) -> np.ndarray:
    """Terms of the activation model for a workload `w` (batch, src, answer, target tokens). The last two are the
    attention probabilities that CPU attention keeps for backward (batch x heads x queries x keys per layer); flash /
    memory-efficient attention on GPU keeps none (`attention_matrices=False`)."""
    n_llm = w["src"] + 2 + w["answer"]  # [bos, source, boundary, answer]
    t_llm, t_tgt = w["batch"] * n_llm, w["batch"] * w["target"]
    L, d, ff = llm["num_hidden_layers"], llm["hidden_size"], llm["intermediate_size"]
    Ld, dn, ffn = nmt["decoder_layers"], nmt["d_model"], nmt["decoder_ffn_dim"]
    square = float(attention_matrices)
    return np.array([t_llm * L * d, t_llm * L * ff, t_tgt * Ld * dn, t_tgt * Ld * ffn,
                     w["batch"] * w["answer"] * llm["vocab_size"], t_tgt * nmt["vocab_size"], t_llm * d,
                     llm["vocab_size"] * d, nmt["vocab_size"] * dn,  # weight-sized transients of the heads
                     square * t_llm * L * llm["num_attention_heads"] * n_llm,
                     square * t_tgt * Ld * nmt["decoder_attention_heads"] * (w["target"] + w["answer"])], dtype=float)


def _small(nmt_base: dict, llm_base: dict, d: int, layers: int, dn: int, dec_layers: int, vocab: int,
           nmt_vocab: int) -> tuple:
    llm = dict(llm_base, hidden_size=d, intermediate_size=3 * d, num_hidden_layers=layers, vocab_size=vocab,
               num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    nmt = dict(nmt_base, d_model=dn, encoder_layers=2, decoder_layers=dec_layers, encoder_ffn_dim=4 * dn,
               decoder_ffn_dim=4 * dn, encoder_attention_heads=4, decoder_attention_heads=4, vocab_size=nmt_vocab)
    return nmt, llm


def measure_step(nmt: dict, llm: dict, w: dict) -> dict:
    """Peak tensor bytes of one stage-1 step (forward + backward) above the model, and the model's own bytes."""
    from train.ot import build_ot_loss

    torch.manual_seed(0)
    model = XBridgeForConditionalGeneration(bridge_config(nmt, llm)).train()
    model.set_stage(1)
    model.set_ot_loss(build_ot_loss("relaxed"))
    batch = make_train_batch(model, w["batch"], {"src": w["src"], "answer": w["answer"], "target": w["target"],
                                                 "ot_target": w["answer"]})
    with TensorMemoryTracker() as mem:
        model(**batch).loss.backward()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    # the trainable weights' gradients are the bridge state's, counted there (16 bytes a parameter)
    return {"step_peak_bytes": mem.peak, "activation_bytes": mem.peak - grads, "weights_bytes": weights}


SMALL_WORK = dict(batch=4, src=16, answer=24, target=24)
LONG, SHORT = dict(batch=2, src=32, answer=64, target=48), dict(batch=8, src=8, answer=12, target=16)
SMALL = [  # ((d_llm, llm layers, d_nmt, decoder layers, llm vocab, nmt vocab), workload): the fit; the last two are
    # held out. Lengths vary too, so the attention terms are told apart from the per-token ones.
    *[(shape, SMALL_WORK) for shape in [
        (64, 2, 32, 2, 2000, 2000), (128, 2, 32, 2, 2000, 2000), (64, 4, 32, 2, 2000, 2000), (64, 2, 64, 2, 2000, 2000),
        (64, 2, 32, 4, 2000, 2000), (64, 2, 32, 2, 6000, 2000), (64, 2, 32, 2, 2000, 6000), (128, 4, 64, 2, 4000, 3000),
        (96, 3, 48, 3, 3000, 5000), (256, 2, 32, 2, 2000, 2000), (64, 6, 32, 2, 2000, 2000), (64, 2, 128, 4, 2000, 2000),
        (128, 3, 96, 3, 6000, 4000)]],
    ((64, 2, 32, 2, 2000, 2000), LONG), ((128, 4, 64, 3, 4000, 3000), LONG), ((64, 2, 32, 2, 2000, 2000), SHORT),
    ((128, 3, 64, 2, 3000, 4000), SHORT),
    ((192, 4, 64, 4, 5000, 4000), SMALL_WORK), ((160, 6, 96, 3, 8000, 6000), LONG),
]


def fit_activations(log) -> dict:
    nmt_base, llm_base = read_config("nllb-200-distilled-600M"), read_config("qwen2.5-0.5b")
    rows = []
    for shape, work in SMALL:
        nmt, llm = _small(nmt_base, llm_base, *shape)
        m = measure_step(nmt, llm, work)
        rows.append(((shape, tuple(work.values())), _features(nmt, llm, work), m))
        log(f"  measured {shape}: step peak {m['step_peak_bytes'] / 2**20:.2f} MiB, activations {m['activation_bytes'] / 2**20:.2f}")
    fit, held = rows[:-2], rows[-2:]
    x = np.stack([f for _, f, _ in fit])
    y = np.array([m["activation_bytes"] for _, _, m in fit], dtype=float)
    # Non-negative least squares, no constant: every byte of a step grows with some shape, none shrinks with one
    # (plain least squares gave the attention terms negative weights, which only fit the small shapes' collinearity).
    from scipy.optimize import nnls

    coef, _ = nnls(x, y)
    validation = []
    for shape, f, m in held:
        predicted = float(f @ coef)
        grads = m["step_peak_bytes"] - m["activation_bytes"]
        total_measured = m["step_peak_bytes"] + m["weights_bytes"]
        validation.append({"shape": shape, "activations_measured": m["activation_bytes"], "activations_predicted": predicted,
                           "step_error": predicted / m["activation_bytes"] - 1,
                           "total_error": (predicted + grads + m["weights_bytes"]) / total_measured - 1})
    return {"bytes_per_term_fp32": coef.tolist(), "validation": validation,
            "terms": ["llm token x layer x hidden", "llm token x layer x intermediate", "target token x layer x d_nmt",
                      "target token x layer x ffn_nmt", "answer token x llm vocab", "target token x nmt vocab",
                      "llm token x hidden (the maps, the embeddings)", "llm vocab x hidden (head-sized transients)",
                      "nmt vocab x d_nmt (head-sized transients)", "CPU attention: llm token x layer x heads x keys",
                      "CPU attention: target token x layer x heads x (target + memory) keys"]}


def per_gpu(counts: dict, act_bytes: float, setting: str) -> dict:
    frozen = 2 * (counts["nmt_frozen"] + counts["llm_frozen"])
    bridge = 16 * counts["bridge"]
    if setting == "4-bit LLM":
        frozen = 2 * counts["nmt_frozen"] + NF4_BYTES * counts["llm_linear"] + 2 * (counts["llm_frozen"] - counts["llm_linear"])
    if setting == "FSDP/ZeRO-3 x8":
        frozen, bridge = frozen / 8, bridge / 8
    return {"weights": frozen, "bridge_state": bridge, "activations": act_bytes, "total": frozen + bridge + act_bytes}


def run_memory(log) -> dict:
    log("activation model: measuring small shapes")
    model = fit_activations(log)
    coef = np.array(model["bytes_per_term_fp32"]) / 2  # bf16 activations
    table = []
    for nmt_name, nmt_file in NMTS.items():
        nmt = read_config(nmt_file)
        for llm_name, llm_file in LLMS.items():
            llm = read_config(llm_file)
            counts = parameter_counts(nmt, llm)
            for work_name, w in WORKLOADS.items():
                act = float(_features(nmt, llm, w, attention_matrices=False) @ coef)
                for setting in SETTINGS:
                    row = per_gpu(counts, act, setting)
                    table.append({"nmt": nmt_name, "llm": llm_name, "workload": work_name, "setting": setting,
                                  **{k: round(v / GIB, 2) for k, v in row.items()},
                                  "bridge_parameters": counts["bridge"]})
    return {"activation_model": model, "table": table}


def write_report(result: dict, folder: Path, machine: dict, command: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "memory.json").write_text(json.dumps({**result, "machine": machine, "command": command}, indent=1) + "\n")
    model = result["activation_model"]
    lines = ["# Will it fit? Peak memory per GPU of a stage-1 step (GiB)", "",
             f"`{command}`. Weights from exact parameter counts; activations from a linear model fitted to the "
             "measured peak tensor memory of training steps at small shapes on CPU (bench/memory.py). Held-out "
             "shapes: " + "; ".join(f"{v['shape']}: step {v['step_error']:+.1%}, step + weights {v['total_error']:+.1%}"
                                     for v in model["validation"]) + ".", ""]
    for work in WORKLOADS:
        lines += [f"## {work}", "", "| NMT | LLM | " + " | ".join(SETTINGS) + " |", "| --- | --- | " + " | ".join("---" for _ in SETTINGS) + " |"]
        rows = [r for r in result["table"] if r["workload"] == work]
        for nmt in NMTS:
            for llm in LLMS:
                cells = {r["setting"]: r for r in rows if r["nmt"] == nmt and r["llm"] == llm}
                lines.append(f"| {nmt} | {llm} | " + " | ".join(
                    f"{cells[s]['total']:.1f} ({cells[s]['weights']:.1f} w + {cells[s]['activations']:.1f} a)" for s in SETTINGS) + " |")
        lines.append("")
    lines.append("Read: total (weights + activations; the rest is the bridge's fp32 state). 80 GB GPUs hold ~74 GiB, "
                 "24 GB ones ~22 GiB.")
    (folder / "memory.md").write_text("\n".join(lines) + "\n")
    return ["memory.json", "memory.md"]
