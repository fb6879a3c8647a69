"""int8 frozen bases against float32 on CPU (issue 33): `python -m bench --part quant`.

Real weights, small shapes: the shipped real bridge (SmolLM2-135M-Instruct + the Firefox Portuguese students,
realworld/) on the first FLORES-200 devtest sentences, both directions, with its bases loaded in float32 and in
int8 (torchao weight-only: every Linear of the LLM and of the NMT but the NMT decoder's cross-attention). The bridge
was trained on float32 bases, so this is also "a bridge trained on float bases, used on int8 ones"; the other way
round (trained on int8, used on float) is tests/test_quantized_bases.py. Quality: chrF++ with 95% intervals and
int8 - float32 paired over sentences; speed: generation seconds on one thread, nothing else computing.
"""

import json
import time
from pathlib import Path

KINDS = ("none", "int8")


def run_quant(sentences: int, log) -> dict:
    import torch

    from miniworld import stats
    from miniworld.evaluate import chrf_from_stats
    from realworld import job
    from realworld.report import sentence_stats

    out = {"sentences": sentences, "directions": {}, "seconds": {}, "llm_linear_bytes": {}}
    outputs = {}
    for kind in KINDS:
        model, processor = job.load_bridge(llm_quantization=kind, nmt_quantization=kind)
        weights = {id(m.weight): m.weight for m in model.llm.modules() if isinstance(m, torch.nn.Linear)}  # tied once
        out["llm_linear_bytes"][kind] = int(sum(w.numel() * (1 if type(w).__name__ == "Int8Tensor" else w.element_size())
                                                for w in weights.values()))
        for key, (src, tgt) in job.DIRECTIONS.items():
            texts = job.flores(src, sentences)
            started = time.perf_counter()
            outputs[kind, key] = job.bridge_translate(model, processor, texts, src, tgt)
            out["seconds"].setdefault(kind, {})[key] = round(time.perf_counter() - started, 1)
            log(f"  {kind} {key}: {out['seconds'][kind][key]} s")
        del model
    for key, (src, tgt) in job.DIRECTIONS.items():
        refs = job.flores(tgt, sentences)
        per = {kind: [sentence_stats(outputs[kind, key], refs, "chrF++", tgt)] for kind in KINDS}
        row = {kind: stats.corpus_score(per[kind], chrf_from_stats).to_dict() for kind in KINDS}
        row["int8_minus_float32"] = stats.corpus_difference(per["int8"], per["none"], chrf_from_stats).to_dict()
        row["identical_outputs"] = sum(a == b for a, b in zip(outputs["none", key], outputs["int8", key])) / sentences
        out["directions"][key] = row
    return out


def _ci(e: dict, sign: str = "") -> str:
    lo, hi = e["ci95"]
    return f"{e['mean']:{sign}.1f} [{lo:{sign}.1f}, {hi:{sign}.1f}]"


def write_report(result: dict, folder: Path, machine: dict, command: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "quant.json").write_text(json.dumps({**result, "machine": machine, "command": command}, indent=1) + "\n")
    rows = ["| direction | float32 chrF++ | int8 chrF++ | int8 - float32 | identical outputs | seconds float32 / int8 |",
            "| --- | --- | --- | --- | --- | --- |"]
    for key, row in result["directions"].items():
        f32, i8, diff = row["none"], row["int8"], row["int8_minus_float32"]
        rows.append(f"| {key} | {_ci(f32)} | {_ci(i8)} | {_ci(diff, '+')} | {row['identical_outputs']:.0%} | "
                    f"{result['seconds']['none'][key]} / {result['seconds']['int8'][key]} |")
    text = "\n".join([
        "# int8 frozen bases against float32 (CPU, torchao weight-only)", "",
        f"`{command}` on {machine.get('cpu')} ({machine.get('cpu_capability')}), one thread. The shipped real bridge "
        f"(SmolLM2-135M + Firefox pt students, stage 1, trained on float32 bases) on the first {result['sentences']} "
        "FLORES-200 devtest sentences, greedy; 95% bootstrap intervals over sentences.", "", *rows, "",
        f"LLM Linear weights: {result['llm_linear_bytes']['none'] / 1e6:.0f} MB float32, "
        f"{result['llm_linear_bytes']['int8'] / 1e6:.0f} MB with int8 bases (the LM head, tied to the embedding, stays "
        "float).", ""])
    (folder / "quant.md").write_text(text)
    return ["quant.json", "quant.md"]
