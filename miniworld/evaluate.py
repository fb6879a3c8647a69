"""Run `eval/` (its loaders, systems, runner, metrics and report) on the mini-world's own test files, and read
back per-item outcomes for the intervals (stats.py).

The harness names languages through one table (`eval.languages`); the world's private-use languages are added to
it at run time (`register_languages`), after which its MGSM and FLORES loaders read the world's files as they are
(`test/mgsm/mgsm_<short>.tsv`, `test/flores/<code>.devtest`). Everything else is eval/'s own code path.
"""

from __future__ import annotations

import json
from pathlib import Path

from .bridge import flag_values
from .runs import done_info, is_done
from .world import ENGLISH, short_code

# The bridge and the LLM are trained on the bare question (no instruction line); the harness's default math
# instruction is switched off with an empty one so every system sees the same question text.
NO_INSTRUCTION = ""


def register_languages(world_dir: str | Path) -> list[str]:
    """Add the world's languages to eval's language table (`eval.languages.register`); returns their codes."""
    from eval import languages as table  # noqa: PLC0415

    info = json.loads((Path(world_dir) / "world.json").read_text())
    codes = list(info["languages"])
    for code in codes:
        if code in table.BY_NLLB:
            continue
        # no Tatoeba data; XL-Sum-style stories under their short code; ROUGE's and sacrebleu's default tokenisers
        # split their space-separated words fine (no Thai segmenter for the Thai-script one: it has spaces)
        table.register(table.Language(short_code(code), code, f"Mini-{short_code(code)}", None, short_code(code), None,
                                      "13a"))
    return codes


KIND = {"mgsm": "math", "flores": "translate", "xlsum": "summarize"}
MAX_NEW_TOKENS = {"math": 64, "translate": 64, "summarize": 48}


def run_benchmark(benchmark: str, system: str, world_dir: str | Path, out: str | Path, langs: list[str],
                  limit: int | None = None, batch_size: int = 50, max_new_tokens: int | None = None, instructed: bool = False,
                  **models) -> str:
    """One `python -m eval <benchmark> --system <system>` run on the world's test files (in process); returns
    the folder holding its `predictions.jsonl` and `scores.json`. `instructed`: every system gets the harness's task
    instruction (the general world's LLMs are tuned on it); otherwise none (the first world's LLM knows none)."""
    from eval.runner import run  # noqa: PLC0415
    from eval.systems import system_class  # noqa: PLC0415

    from .world import TASK_INSTRUCTIONS  # noqa: PLC0415

    register_languages(world_dir)
    kind = KIND[benchmark]
    instruction = TASK_INSTRUCTIONS.get(kind, NO_INSTRUCTION) if instructed else NO_INSTRUCTION
    if max_new_tokens is None:  # the general LLM opens its math answers with "Let's think step by step."
        max_new_tokens = MAX_NEW_TOKENS[kind] * (2 if instructed and kind == "math" else 1)
    directions = None
    if benchmark == "flores":  # an English-only system (encoder-only) translates into English only
        directions = ["x-en"] if system_class(system).english_only else ["x-en", "en-x"]
    run(benchmark, system, langs, str(out), source=str(Path(world_dir) / "test" / benchmark), batch_size=batch_size,
        device="cpu", limit=limit, dtype="float32", instruction=instruction, max_new_tokens={kind: max_new_tokens},
        comet_model=None, directions=directions, **models)
    return str(Path(out) / benchmark / system)


def _records(run_dir: str | Path) -> list[dict]:
    with open(Path(run_dir) / "predictions.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _item_order(record: dict) -> int:
    return int(record["id"].rsplit(":", 1)[1])


# Unicode name prefix of the letters of each script the world writes in (the error analysis's script check)
SCRIPT_LETTERS = {"Cyrl": "CYRILLIC", "Thai": "THAI", "Deva": "DEVANAGARI", "Grek": "GREEK", "Armn": "ARMENIAN"}


def in_script(text: str, script: str) -> bool:
    """Whether most letters of `text` (>= 90%) are of `script` (a written-in-the-wrong-language check)."""
    import unicodedata  # noqa: PLC0415

    letters = [ch for ch in text if ch.isalpha()]
    ours = sum(unicodedata.name(ch, "").startswith(SCRIPT_LETTERS[script]) for ch in letters)
    return bool(letters) and ours >= 0.9 * len(letters)


def math_outcomes(run_dir: str | Path) -> dict[str, dict[str, list[float]]]:
    """{"answer-en" | "answer-x": {lang short code: [1.0/0.0 per problem, in problem order]}}: eval's own answer
    matching (`eval.metrics.answers_match`), item by item. Where both answers exist, the error analysis of the
    answer in the question's language, item by item too: "x-agrees" (its number is the English answer's: the way
    back kept what the LLM wrote), "x-no-number" (it states no number at all), "x-in-script" (written in the
    language's script; not for Latin-script languages, which English shares)."""
    from eval.metrics import answers_match, extract_answer  # noqa: PLC0415

    out: dict[str, dict[str, list]] = {}

    def add(task: str, lang: str, value: bool) -> None:
        out.setdefault(task, {}).setdefault(short_code(lang), []).append(float(value))

    for record in sorted(_records(run_dir), key=lambda r: (r["src_lang"], _item_order(r))):
        english, tgt = record["predictions"].get(ENGLISH), record["tgt_lang"]
        theirs = record["predictions"].get(tgt) if tgt != ENGLISH else None
        if english is not None:
            add("answer-en", record["src_lang"], answers_match(english, record["reference"]))
        if theirs is None:
            continue
        add("answer-x", record["src_lang"], answers_match(theirs, record["reference"]))
        if english is not None:
            number = extract_answer(theirs)
            add("x-agrees", record["src_lang"], number is not None and number == extract_answer(english))
            add("x-no-number", record["src_lang"], number is None)
            if tgt.split("_")[1] in SCRIPT_LETTERS:
                add("x-in-script", record["src_lang"], in_script(theirs, tgt.split("_")[1]))
    return out


def summary_outcomes(run_dir: str | Path) -> dict[str, dict[str, list[float]]]:
    """{"summary": {lang short code: [ROUGE-L F1 (0-1) per story, in story order]}}: eval's XL-Sum scorer, item
    by item (its corpus score is their mean, x 100)."""
    from eval.metrics import rouge_l  # noqa: PLC0415

    out: dict[str, list] = {}
    for record in sorted(_records(run_dir), key=lambda r: (r["src_lang"], _item_order(r))):
        lang = record["tgt_lang"]
        out.setdefault(short_code(lang), []).append(rouge_l([record["predictions"][lang]], [record["reference"]], lang) / 100)
    return {"summary": out}


def _metric(name: str, tgt_lang: str = ENGLISH):
    import sacrebleu  # noqa: PLC0415

    if name == "chrF++":
        return sacrebleu.CHRF(word_order=2)
    from eval.metrics import bleu_tokenizer  # noqa: PLC0415  (eval's BLEU: spBLEU when its model is on disk)

    return sacrebleu.BLEU(tokenize=bleu_tokenizer(tgt_lang))


def translation_stats(run_dir: str | Path, metric_name: str = "chrF++") -> dict[str, dict[str, list[list[float]]]]:
    """{"x-en" | "en-x": {lang short code: per-sentence chrF++ (or BLEU) statistics}} (sacrebleu's sufficient
    statistics: summed over any set of sentences and scored, they give that set's corpus score)."""
    by_unit: dict[tuple[str, str], list[dict]] = {}
    for record in _records(run_dir):
        direction = "x-en" if record["tgt_lang"] == ENGLISH else "en-x"
        lang = record["src_lang"] if direction == "x-en" else record["tgt_lang"]
        by_unit.setdefault((direction, short_code(lang)), []).append(record)
    out: dict[str, dict[str, list]] = {}
    for (direction, lang), records in sorted(by_unit.items()):
        records.sort(key=_item_order)
        hyps = [r["predictions"][r["tgt_lang"]] for r in records]
        metric = _metric(metric_name, records[0]["tgt_lang"])
        stats = metric._extract_corpus_statistics(hyps, [[r["reference"] for r in records]])  # per sentence
        out.setdefault(direction, {})[lang] = [list(map(float, s)) for s in stats]
    return out


def chrf_from_stats(summed) -> float:
    """chrF++ of summed sufficient statistics (the scorer of `translation_stats`)."""
    return _metric("chrF++")._compute_score_from_stats(list(summed)).score


def bleu_from_stats(summed) -> float:
    """BLEU of summed sufficient statistics (`translation_stats(..., "BLEU")`; scoring needs no tokenizer)."""
    return _metric("BLEU")._compute_score_from_stats(list(summed)).score


# ------------------------------------------------------------------------------------------ evaluation jobs
def evaluate(system: str, benchmarks: tuple[str, ...], world: str, out: str, langs: list[str], limit: int | None,
             models: dict, instructed: bool = False, *trained) -> dict:
    """One system on the world's test sets (a job): its per-item outcomes (`outcomes`), and a trained system's
    stage losses (`chain_losses`); `trained`: the bridge folder of the job it waited for; `instructed`: the
    harness's task instructions (the general world)."""
    if trained:
        models = {**models, "model": trained[-1]}
    runs = {}
    for benchmark in benchmarks:
        use = [c for c in langs if c != ENGLISH] if benchmark == "flores" else langs
        runs[benchmark] = run_benchmark(benchmark, system, world, out, use, limit=limit, instructed=instructed, **models)
    return outcomes(runs) | ({"losses": chain_losses(trained[-1])} if trained else {})


def chain_losses(folder: str | Path) -> dict[str, dict[str, list[float]]]:
    """{stage folder name: logged losses} of a trained system's folder and every stage it was trained from
    (`--model_name_or_path` in each stage's COMPLETED command)."""
    losses, folder = {}, Path(folder)
    while is_done(folder):
        done = done_info(folder)
        losses[folder.name] = done["losses"]
        parent = flag_values(done.get("command", [])).get("--model_name_or_path")  # as the stage itself read it
        if not parent:
            break
        folder = Path(parent)
    return losses


def outcomes(runs: dict) -> dict:
    """Per-item outcomes of one evaluation job: {"mgsm": math_outcomes, "xlsum": summary_outcomes, "flores":
    translation_stats}."""
    scorers = {"mgsm": math_outcomes, "xlsum": summary_outcomes, "flores": translation_stats}
    out = {benchmark: scorers[benchmark](folder) for benchmark, folder in runs.items()}
    if "flores" in runs:
        out["flores-bleu"] = translation_stats(runs["flores"], "BLEU")
    return out
