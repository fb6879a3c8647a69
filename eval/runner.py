"""Run a benchmark with a system: batched, resumable generation, then scoring.

Layout of one run: `<output_dir>/<benchmark>/<system>/`
- `run.json`: what was run (benchmark, system, model paths, languages); a resume with other settings is refused;
- `predictions.jsonl`: one line per example, appended as each batch finishes (inputs, references, outputs);
  on restart the ids already there are skipped, so a killed run loses at most one batch;
- `scores.json`: metrics per unit plus notes (BLEU tokenizer used, COMET availability, skipped outputs).
"""

import json
from pathlib import Path

from tqdm.auto import tqdm

from configuration_xbridge import ENGLISH

from . import data, metrics
from .languages import short
from .systems import load_system, system_class

KINDS = {"flores": "translate", "tatoeba": "translate", "mgsm": "math", "msvamp": "math", "xlsum": "summarize"}


def _out_langs(kind: str, tgt_lang: str, system_cls) -> tuple[list[str], list[str]]:
    """(languages to generate, languages this system cannot give). Math is answered in English (the LLM) and
    in the question's language (the decoder side); an English-only system gives the English answer alone."""
    wanted = list(dict.fromkeys([ENGLISH, tgt_lang])) if kind == "math" else [tgt_lang]
    if system_cls.english_only and kind == "math":
        return [ENGLISH], [lang for lang in wanted if lang != ENGLISH]
    return wanted, []


def plan(benchmark, system_name, langs, limit=None, source=None, directions=None):
    """Check the request (system x benchmark x languages) before any data or model is loaded, then load units."""
    system_cls = system_class(system_name)
    if benchmark not in KINDS:
        raise ValueError(f"unknown benchmark {benchmark!r}; valid benchmarks: {', '.join(KINDS)}")
    kind = KINDS[benchmark]
    options = {}
    if kind == "translate":
        if directions is None:
            # An English-only system has one direction; other directions asked for explicitly fail below.
            directions = ["x-en"] if system_cls.english_only else list(data.DIRECTIONS)
            if benchmark == "tatoeba" and not system_cls.english_only:
                directions = ["x-en", "en-x"]  # English-centric pairs
        options["directions"] = directions
        requests = data.translation_pairs(langs, directions)
    else:
        requests = [(lang, lang) for lang in langs]
    dropped_langs = []
    for src_lang, tgt_lang in requests:
        out, dropped = _out_langs(kind, tgt_lang, system_cls)
        system_cls.check(kind, src_lang, out)
        dropped_langs += dropped
    skipped = [f"{system_name} writes English only: no answer in the question's language (answer-x) for "
               f"{', '.join(short(lang) for lang in dropped_langs)}"] if dropped_langs else []
    return data.load(benchmark, langs, limit=limit, source=source, **options), skipped


def read_predictions(path: Path) -> dict:
    """The finished records of a predictions file, by id (none when it does not exist yet); a line cut by a kill
    mid-write is skipped, so its example is computed again."""
    done = {}
    if path.exists():
        with path.open(encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill mid-write: recompute that example
                    continue
                done[record["id"]] = record
    return done


def _end_cut_line(path: Path) -> None:
    """A kill mid-write leaves half a line: end it, so the next record starts on a line of its own."""
    if path.exists() and path.stat().st_size:
        with path.open("rb+") as f:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                f.write(b"\n")


def _check_resume(run_file: Path, meta: dict) -> None:
    if run_file.exists():
        previous = json.loads(run_file.read_text(encoding="utf-8"))
        keys = ("benchmark", "system", "model", "nmt", "llm", "instruction", "max_new_tokens")
        changed = [k for k in keys if previous.get(k) != meta.get(k)]
        # The NLLB engine and its compute type (runs written before the option existed used transformers).
        defaults = {"engine": "transformers", "compute_type": "default"}
        changed += [k for k, v in defaults.items() if previous.get(k, v) != meta.get(k, v)]
        if changed:
            raise ValueError(f"{run_file.parent} holds a run with other settings ({', '.join(changed)} differ): "
                             "use another --output_dir or delete that folder")


def run(benchmark, system, langs, output_dir, model=None, nmt=None, llm=None, limit=None, batch_size=8,
        source=None, directions=None, device=None, dtype="auto", max_new_tokens=None, instruction=None,
        comet_model="Unbabel/wmt22-comet-da", system_obj=None, engine="transformers",
        compute_type="default") -> dict:
    """Generate what is missing, then score everything; returns the scores dict (also saved)."""
    units, skipped = plan(benchmark, system, langs, limit=limit, source=source, directions=directions)
    out_dir = Path(output_dir) / benchmark / system
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = dict(benchmark=benchmark, system=system, model=model, nmt=nmt, llm=llm, langs=langs, limit=limit,
                source=source, instruction=instruction, max_new_tokens=max_new_tokens, engine=engine,
                compute_type=compute_type)
    _check_resume(out_dir / "run.json", meta)
    (out_dir / "run.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")

    pred_path = out_dir / "predictions.jsonl"
    done = read_predictions(pred_path)
    _end_cut_line(pred_path)
    todo = sum(ex["id"] not in done for unit in units for ex in unit.examples)
    if todo:
        if system_obj is None:
            system_obj = load_system(system, model=model, nmt=nmt, llm=llm, device=device, dtype=dtype,
                                     max_new_tokens=max_new_tokens, instruction=instruction, engine=engine,
                                     compute_type=compute_type)
        system_cls = type(system_obj)
        with pred_path.open("a", encoding="utf-8") as f, tqdm(total=todo, desc=f"{benchmark}/{system}") as bar:
            for unit in units:
                pending = [ex for ex in unit.examples if ex["id"] not in done]
                out_langs, _ = _out_langs(unit.kind, unit.tgt_lang, system_cls)
                for start in range(0, len(pending), batch_size):
                    batch = pending[start : start + batch_size]
                    texts = [ex["input"] for ex in batch]
                    if unit.kind == "translate":
                        outputs = {unit.tgt_lang: system_obj.translate(texts, unit.src_lang, unit.tgt_lang)}
                    else:
                        outputs = system_obj.respond(texts, unit.src_lang, out_langs, unit.kind)
                    for i, ex in enumerate(batch):
                        record = {**ex, "unit": unit.key, "src_lang": unit.src_lang, "tgt_lang": unit.tgt_lang,
                                  "predictions": {lang: outputs[lang][i] for lang in out_langs}}
                        f.write(json.dumps(record, ensure_ascii=False) + "\n")
                        done[ex["id"]] = record
                    f.flush()  # a kill after this loses nothing of this batch
                    bar.update(len(batch))
    scores = score(benchmark, units, done, comet_model=comet_model)
    scores.update(system=system, model=model or llm or nmt, notes=scores["notes"] + skipped)
    (out_dir / "scores.json").write_text(json.dumps(scores, indent=1, ensure_ascii=False), encoding="utf-8")
    return scores


def score(benchmark, units, records, comet_model=None) -> dict:
    """Metrics per unit from the prediction records: a list of rows (task, lang, metric, value, n)."""
    rows, notes = [], set()
    for unit in units:
        recs = [records[ex["id"]] for ex in unit.examples if ex["id"] in records]
        if not recs:
            continue
        refs = [r["reference"] for r in recs]
        n = len(recs)
        if unit.kind == "translate":
            hyps = [r["predictions"][unit.tgt_lang] for r in recs]
            task = _direction(unit)
            lang = short(unit.src_lang) if unit.tgt_lang == ENGLISH else short(unit.tgt_lang)
            if task == "x-y":
                lang = f"{short(unit.src_lang)}-{short(unit.tgt_lang)}"
            value, signature = metrics.bleu(hyps, refs, unit.tgt_lang)
            notes.add(f"BLEU {short(unit.tgt_lang)}: {signature}")
            rows.append(dict(task=task, lang=lang, metric="BLEU", value=value, n=n))
            value, signature = metrics.chrf_pp(hyps, refs)
            notes.add(f"chrF++: {signature}")
            rows.append(dict(task=task, lang=lang, metric="chrF++", value=value, n=n))
            if comet_model:
                value, note = metrics.comet([r["input"] for r in recs], hyps, refs, comet_model)
                notes.add(note)
                if value is not None:
                    rows.append(dict(task=task, lang=lang, metric="COMET", value=value, n=n))
        elif unit.kind == "math":
            for lang, task in ((ENGLISH, "answer-en"), (unit.tgt_lang, "answer-x")):
                preds = [r["predictions"].get(lang) for r in recs]
                if any(p is None for p in preds) or (task == "answer-x" and lang == ENGLISH):
                    continue  # not produced by this system (or the x answer is the English one)
                rows.append(dict(task=task, lang=short(unit.src_lang), metric="accuracy",
                                 value=metrics.accuracy(preds, refs), n=n))
        else:  # summarize
            preds = [r["predictions"][unit.tgt_lang] for r in recs]
            rows.append(dict(task="summary", lang=short(unit.src_lang), metric="ROUGE-L",
                             value=metrics.rouge_l(preds, refs, unit.tgt_lang), n=n))
    if benchmark == "xlsum":
        notes.add("ROUGE-L: multilingual_rouge (XL-Sum authors' tokenisation), F1 x 100, mean over documents")
    return dict(benchmark=benchmark, scores=rows, notes=sorted(notes))


def _direction(unit: data.Unit) -> str:
    if unit.tgt_lang == ENGLISH:
        return "x-en"
    return "en-x" if unit.src_lang == ENGLISH else "x-y"

