"""Evaluation of the two base models alone: the English LLM's accuracy on held-out English problems, and the
NMT model's chrF on held-out sentences for every pair x<->eng (sacrebleu, the field's implementation)."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import sacrebleu
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from .bases import english_prompt, llm_generate, translate
from .runs import read_jsonl
from .world import ENGLISH

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> float | None:
    """MGSM convention: the last number in the text, thousands separators removed."""
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def eval_llm(llm_dir: str | Path, world_dir: str | Path, limit: int | None = None) -> dict:
    tok = AutoTokenizer.from_pretrained(llm_dir)
    model = AutoModelForCausalLM.from_pretrained(llm_dir)
    rows = [r for r in read_jsonl(Path(world_dir) / "test" / "problems.jsonl") if r["lang"] == ENGLISH][:limit]
    t0 = time.time()
    preds = llm_generate(model, tok, [english_prompt(r["question"]) for r in rows])
    correct = [last_number(p) == r["answer"] for p, r in zip(preds, rows)]
    by_ops = {}
    for r, c in zip(rows, correct):
        by_ops.setdefault(str(r["n_ops"]), []).append(c)
    return dict(accuracy=100 * sum(correct) / len(rows), n=len(rows), seconds=time.time() - t0,
                accuracy_by_ops={k: 100 * sum(v) / len(v) for k, v in sorted(by_ops.items())},
                examples=[dict(question=r["question"], prediction=p, answer=r["answer"]) for r, p in zip(rows[:3], preds)])


def story_nll(model, tok, text: str) -> float:
    """Mean NLL (nats/token) of `text` with the loss on every token, as in pretraining."""
    import torch  # noqa: PLC0415

    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids, labels=ids).loss.item()


def scrambled(texts: list[str]) -> list[str]:
    """Each text with its words shuffled (a fixed stream): after a first copy, only copying predicts a second."""
    rng = random.Random(0)
    return [" ".join(rng.sample(words, len(words))) for words in (t.split() for t in texts)]


def copy_nll(model, tok, passages: list[str]) -> float:
    """Mean NLL (nats/token) of the second copy of each passage in `"<passage>\\n<passage>"`, as the repeated
    passages of pretraining are laid out; the second copy's first token (it carries the newline) is left out."""
    import torch  # noqa: PLC0415

    total = count = 0.0
    with torch.no_grad():
        for text in passages:
            n = len(tok(text, add_special_tokens=False)["input_ids"]) - 1
            ids = tok(f"{text}\n{text}", return_tensors="pt")["input_ids"]
            nll = torch.nn.functional.cross_entropy(model(input_ids=ids).logits[0, -n - 1:-1], ids[0, -n:], reduction="sum")
            total, count = total + nll.item(), count + n
    return total / count


def eval_general_llm(llm_dir: str | Path, world_dir: str | Path, limit: int | None = None) -> dict:
    """A general LLM (issue 13) prompted as the harness prompts it: held-out English math accuracy, English summary
    ROUGE-L (eval's XL-Sum scorer), and how well it writes held-out English stories (mean token NLL)."""
    from eval.metrics import rouge_l  # noqa: PLC0415

    from processing_xbridge import chat_prompt  # noqa: PLC0415
    from .world import MATH_INSTRUCTION, SUMMARY_INSTRUCTION  # noqa: PLC0415

    tok = AutoTokenizer.from_pretrained(llm_dir)
    model = AutoModelForCausalLM.from_pretrained(llm_dir).eval()
    world_dir = Path(world_dir)
    problems = [r for r in read_jsonl(world_dir / "test" / "problems.jsonl") if r["lang"] == ENGLISH][:limit]
    stories = [r for r in read_jsonl(world_dir / "test" / "stories.jsonl") if r["lang"] == ENGLISH][:limit]
    t0 = time.time()

    def answer(instruction: str, texts: list[str], max_new_tokens: int) -> list[str]:
        prompts = [chat_prompt(tok, t, instruction) for t in texts]
        return llm_generate(model, tok, prompts, max_new_tokens=max_new_tokens, add_special_tokens=False)

    math = answer(MATH_INSTRUCTION, [r["question"] for r in problems], 128)
    summaries = answer(SUMMARY_INSTRUCTION, [r["story"] for r in stories], 48)
    correct = [last_number(p) == r["answer"] for p, r in zip(math, problems)]
    nll = [story_nll(model, tok, r["story"]) for r in stories]
    # Copying from the context, which stage 1 relies on: a real LLM's loss on the second copy of a repeated span is
    # near zero (and with the words shuffled, only copying predicts them).
    return dict(accuracy=100 * sum(correct) / len(problems), n=len(problems),
                summary_rouge_l=rouge_l(summaries, [r["summary"] for r in stories], ENGLISH), n_stories=len(stories),
                story_nll=sum(nll) / len(nll), copy_nll=copy_nll(model, tok, [r["story"] for r in stories]),
                scrambled_copy_nll=copy_nll(model, tok, scrambled([r["story"] for r in stories])), seconds=time.time() - t0,
                examples=[dict(question=r["question"], prediction=p) for r, p in zip(problems[:2], math)]
                + [dict(story=r["story"], prediction=p, reference=r["summary"]) for r, p in zip(stories[:2], summaries)])


def eval_nmt(nmt_dir: str | Path, world_dir: str | Path, limit: int | None = None) -> dict:
    tok = AutoTokenizer.from_pretrained(nmt_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(nmt_dir)
    flores = Path(world_dir) / "test" / "flores"
    langs = json.loads((Path(world_dir) / "world.json").read_text())["languages"]
    english = (flores / f"{ENGLISH}.devtest").read_text(encoding="utf-8").splitlines()[:limit]
    t0 = time.time()
    pairs = {}
    for code in langs:
        x = (flores / f"{code}.devtest").read_text(encoding="utf-8").splitlines()[:limit]
        to_en = translate(model, tok, x, code, ENGLISH)
        from_en = translate(model, tok, english, ENGLISH, code)
        pairs[f"{code}->{ENGLISH}"] = sacrebleu.corpus_chrf(to_en, [english]).score
        pairs[f"{ENGLISH}->{code}"] = sacrebleu.corpus_chrf(from_en, [x]).score
    return dict(chrf=pairs, min_chrf=min(pairs.values()), n=len(english), seconds=time.time() - t0)


def write_report(results: dict, out: str | Path) -> None:
    """`base_models.json` + `base_models.md` under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "base_models.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    llm, nmt = results["llm"], results["nmt"]
    lines = ["# Mini-world base models", "",
             f"English LLM: **{llm['accuracy']:.1f}%** of {llm['n']} held-out English problems (greedy; target >= 90).",
             "By number of operations: " + ", ".join(f"{k} op: {v:.1f}%" for k, v in llm["accuracy_by_ops"].items()), "",
             f"NMT chrF on {nmt['n']} held-out sentences per language (target >= 80 for every pair):", "",
             "| pair | chrF |", "| --- | --- |"]
    lines += [f"| {pair} | {score:.1f} |" for pair, score in nmt["chrf"].items()]
    if "timings" in results:
        lines += ["", "Timings (seconds): " + ", ".join(f"{k} {v:.0f}" for k, v in results["timings"].items())]
    (out / "base_models.md").write_text("\n".join(lines) + "\n")
