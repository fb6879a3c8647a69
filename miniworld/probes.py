"""Why stage 1 does not read in the general world (issue 13): can the world's LLMs read back what precedes them?

`python -m miniworld.probes` measures each shipped general LLM on the held-out English stories and writes
results/miniworld/general/probes.md (+ .json), every number with its 95% bootstrap interval over the stories:

- story: NLL (nats/token) of the story itself, as in pretraining (what the LLM knows without any help);
- copy: NLL of its second copy in `"<story>\\n<story>"`, the layout of the repeated passages the LLM was trained on
  (`base_eval.copy_nll`; a real LLM's loss there is near zero: it copies spans from its context);
- scrambled copy: the same with the story's words shuffled, so that only copying predicts the second copy;
- embedding read-back: stage 1's layout with the LLM's own input embeddings instead of mapped encoder states,
  `[bos, embed(story), embed("\\n")]` -> the story: the best a mapping could hand the LLM;
- bridge read-back (when `runs/miniworld-general/<llm>` holds the main job's seed-0 stage-1 bridge): x->en chrF++
  of held-out sentences through that bridge with English itself, qaa and qab as the source.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import shipped, stats
from .base_eval import copy_nll, scrambled, story_nll
from .bases import LLM_FAMILIES
from .runs import is_done, mark_data_done, read_jsonl
from .world import ENGLISH, WorldConfig, generate

N_READ_BACK = 50  # held-out sentences per source language through a stage-1 bridge
READ_BACK_SOURCES = (ENGLISH, "qaa_Latn", "qab_Cyrl")


def embedding_read_back_nll(model, tok, text: str) -> float:
    """NLL of `text` after `[bos, embed(text), embed("\\n")]`: stage 1's layout, the mapped source replaced by the
    LLM's own embeddings of the English text."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    prefix = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + ids + newline
    full = torch.tensor([prefix + ids])
    with torch.no_grad():
        logits = model(input_ids=full).logits[0, len(prefix) - 1:-1]
    return torch.nn.functional.cross_entropy(logits, full[0, len(prefix):]).item()


def llm_probes(llm_dir: str | Path, stories: list[str]) -> dict[str, stats.Estimate]:
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    tok = AutoTokenizer.from_pretrained(llm_dir)
    model = AutoModelForCausalLM.from_pretrained(llm_dir).eval()
    values = {"story": [story_nll(model, tok, s) for s in stories],
              "copy": [copy_nll(model, tok, [s]) for s in stories],
              "scrambled copy": [copy_nll(model, tok, [s]) for s in scrambled(stories)],
              "embedding read-back": [embedding_read_back_nll(model, tok, s) for s in stories]}
    return {name: stats.mean_of([[v]], scale=1.0) for name, v in values.items()}


def bridge_read_back(stage1: Path, world: Path) -> dict[str, float]:
    """x->en chrF++ of `N_READ_BACK` held-out sentences through a stage-1 bridge, per source language."""
    import sacrebleu  # noqa: PLC0415

    from eval.systems import XBridgeSystem  # noqa: PLC0415

    from .evaluate import register_languages  # noqa: PLC0415

    register_languages(world)
    system = XBridgeSystem(str(stage1), device="cpu", dtype="float32")
    flores = world / "test" / "flores"
    reference = (flores / f"{ENGLISH}.devtest").read_text(encoding="utf-8").splitlines()[:N_READ_BACK]
    scores = {}
    for lang in READ_BACK_SOURCES:
        source = (flores / f"{lang}.devtest").read_text(encoding="utf-8").splitlines()[:N_READ_BACK]
        scores[lang] = sacrebleu.corpus_chrf(system._translate(source, lang, ENGLISH), [reference], word_order=2).score
    return scores


def run(world: Path, runs: Path, out: Path) -> dict:
    if not is_done(world):  # the general world, as the main job generates it (deterministic)
        mark_data_done(world, generate(world, WorldConfig())["counts"])
    stories = [r["story"] for r in read_jsonl(world / "test" / "stories.jsonl") if r["lang"] == ENGLISH]
    results = {}
    for family in LLM_FAMILIES:
        row = {name: e.to_dict() for name, e in llm_probes(shipped.checkpoint(f"llm-{family}"), stories).items()}
        stage1 = runs / family / "xbridge" / "seed0" / "stage1"
        if is_done(stage1):
            row["bridge read-back chrF++"] = {lang: round(v, 2) for lang, v in bridge_read_back(stage1, world).items()}
        results[family] = row
    out.mkdir(parents=True, exist_ok=True)
    (out / "probes.json").write_text(json.dumps(results, indent=1) + "\n")
    names = ["story", "copy", "scrambled copy", "embedding read-back"]
    lines = ["# Can the general world's LLMs read back what precedes them? (`python -m miniworld.probes`)", "",
             f"NLL in nats/token on the {len(stories)} held-out English stories, mean [95% bootstrap interval over "
             "the stories]; see the module docstring of `miniworld/probes.py` for each probe. A real LLM's copy "
             "NLL is near 0.", "",
             "| LLM | " + " | ".join(names) + " | bridge read-back chrF++ (" + " / ".join(READ_BACK_SOURCES) + ") |",
             "| --- " * (len(names) + 2) + "|"]
    for family, row in results.items():
        cells = [stats.Estimate.from_dict(row[n]).fmt(2) for n in names]
        back = row.get("bridge read-back chrF++")
        cells.append(" / ".join(f"{back[lang]:.1f}" for lang in READ_BACK_SOURCES) if back else "no run folder")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    (out / "probes.md").write_text("\n".join(lines) + "\n")
    return results


if __name__ == "__main__":
    import argparse

    from .jobs import THREADS_PER_JOB

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", default="runs/miniworld-general/llama/world", type=Path,
                        help="a general world folder (its held-out stories and sentences)")
    parser.add_argument("--runs", default="runs/miniworld-general", type=Path,
                        help="the main jobs' run folders (`general --llm all`), for the bridge read-back")
    parser.add_argument("--out", default="results/miniworld/general", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(THREADS_PER_JOB)
    run(args.world, args.runs, args.out)
