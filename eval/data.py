"""Benchmark loaders: each turns (languages, limit) into evaluation units of examples.

A source is either a local folder (default: the copy vendored under `data/`) or a Hub dataset id, loaded with
`datasets.load_dataset`. A unit is one direction or one language: its examples share source/target languages
and are generated in batches together. Example ids are stable across runs (they key resumption).
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from configuration_xbridge import ENGLISH

from . import languages

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = REPO_ROOT / "data"


@dataclass
class Unit:
    """One scored block: `kind` is "translate" (one output language), "math" or "summarize"."""

    key: str  # e.g. "swh_Latn-eng_Latn" or "swh_Latn"
    kind: str
    src_lang: str
    tgt_lang: str
    examples: list[dict] = field(default_factory=list)  # each: id, input, reference (+ extras)


def _is_local(source: str) -> bool:
    return os.path.isdir(source)


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what}: missing file {path}")
    return path


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _hub_split(source: str, config: str | None, split: str):
    import datasets

    return datasets.load_dataset(source, config, split=split)


def _cut(rows: list, limit: int | None) -> list:
    return rows if limit is None else rows[:limit]


# ---------------------------------------------------------------- FLORES-200


def flores_sentences(source: str, lang: str) -> list[str]:
    """devtest sentences of `lang` (NLLB code): `<folder>/<code>.devtest` (a FLORES-101 folder's `<code101>.devtest`
    too, through the tested code map: `kor_Hang` reads `kor.devtest`) or the Hub config `<code>`."""
    if _is_local(source):
        path, old = Path(source) / f"{lang}.devtest", languages.flores101_code(lang)
        if not path.exists() and old is not None and (Path(source) / f"{old}.devtest").exists():
            path = Path(source) / f"{old}.devtest"
        return _read_lines(_require(path, f"FLORES-200 has no {lang} in {source}"))
    rows = _hub_split(source, lang, "devtest")  # e.g. openlanguagedata/flores_plus, facebook/flores
    column = "text" if "text" in rows.column_names else "sentence"
    return list(rows[column])


def translation_units(pairs, read, limit, prefix) -> list[Unit]:
    """Units for (src, tgt) pairs; `read(lang)` gives the line-aligned sentences of a language."""
    cache = {}
    units = []
    for src, tgt in pairs:
        for lang in (src, tgt):
            if lang not in cache:
                cache[lang] = read(lang)
        src_lines, tgt_lines = cache[src], cache[tgt]
        if len(src_lines) != len(tgt_lines):
            raise ValueError(f"{prefix}: {src} has {len(src_lines)} lines but {tgt} has {len(tgt_lines)}")
        examples = [
            {"id": f"{src}-{tgt}:{i}", "input": s, "reference": t}
            for i, (s, t) in enumerate(_cut(list(zip(src_lines, tgt_lines)), limit))
        ]
        units.append(Unit(f"{src}-{tgt}", "translate", src, tgt, examples))
    return units


DIRECTIONS = ("x-en", "en-x", "x-y")


def translation_pairs(langs: list[str], directions: list[str]) -> list[tuple[str, str]]:
    """x-en / en-x for every non-English language; x-y for every ordered pair of them."""
    unknown = [d for d in directions if d not in DIRECTIONS]
    if unknown:
        raise ValueError(f"unknown direction(s) {unknown}; valid directions: {', '.join(DIRECTIONS)}")
    others = [lang for lang in langs if lang != ENGLISH]
    pairs = []
    if "x-en" in directions:
        pairs += [(x, ENGLISH) for x in others]
    if "en-x" in directions:
        pairs += [(ENGLISH, x) for x in others]
    if "x-y" in directions:
        pairs += [(x, y) for x in others for y in others if x != y]
    return pairs


def flores(langs, limit=None, source=None, directions=DIRECTIONS) -> list[Unit]:
    source = str(source or DATA_ROOT / "flores200_devtest")
    return translation_units(
        translation_pairs(langs, directions), lambda lang: flores_sentences(source, lang), limit, "FLORES"
    )


# ---------------------------------------------------------------- Tatoeba


def _tatoeba_pair(lang: str) -> str:
    code = languages.BY_NLLB[lang].tatoeba
    if code is None:
        valid = [lang.short for lang in languages.LANGUAGES if lang.tatoeba]
        raise ValueError(f"Tatoeba has no English pair for {lang}; valid languages: {', '.join(valid)}")
    return "-".join(sorted(["eng", code]))  # the test set directories are named in alphabetical order


def tatoeba(langs, limit=None, source=None, directions=("x-en", "en-x")) -> list[Unit]:
    """Tatoeba Challenge test pairs (English <-> x only; `x-y` is not a Tatoeba direction)."""
    source = str(source or DATA_ROOT / "tatoeba_test_v2021-08-07")
    if "x-y" in directions:
        raise ValueError("Tatoeba pairs are English-centric: valid directions are x-en, en-x")
    units = []
    for x in [lang for lang in langs if lang != ENGLISH]:
        code = languages.BY_NLLB[x].tatoeba
        pair = _tatoeba_pair(x)
        if _is_local(source):
            folder = Path(source) / pair
            stem = "tatoeba-test-v2021-08-07"
            eng = _read_lines(_require(folder / f"{stem}.eng", f"Tatoeba has no {pair} in {source}"))
            other = _read_lines(_require(folder / f"{stem}.{code}", f"Tatoeba has no {pair} in {source}"))
            labels_path = folder / f"{stem}.{code}.labels"
            labels = _read_lines(labels_path) if labels_path.is_file() else [None] * len(other)
        else:  # Helsinki-NLP/tatoeba_mt style: config "<pair>", split "test"
            rows = _hub_split(source, pair, "test")
            swap = rows[0]["sourceLang"].startswith("eng")
            eng = list(rows["sourceString" if swap else "targetString"])
            other = list(rows["targetString" if swap else "sourceString"])
            labels = list(rows["targetLang" if swap else "sourceLang"])
        # zho mixes Simplified/Traditional Mandarin and Cantonese: keep the Simplified lines (zho_Hans).
        keep = [i for i, label in enumerate(labels) if code != "zho" or label in (None, "cmn_Hans")]
        eng, other = [eng[i] for i in keep], [other[i] for i in keep]
        read = {ENGLISH: eng, x: other}.__getitem__
        pairs = translation_pairs([x], [d for d in directions if d != "x-y"])
        units += translation_units(pairs, read, limit, "Tatoeba")
    return units


# ---------------------------------------------------------------- MGSM / MSVAMP


def mgsm(langs, limit=None, source=None, **_) -> list[Unit]:
    """MGSM test: `<folder>/mgsm_<short>.tsv` (question \\t answer) or the Hub config `<short>` (juletxara/mgsm)."""
    source = str(source or DATA_ROOT / "mgsm")
    units = []
    for lang in langs:
        code = languages.short(lang)
        if _is_local(source):
            path = _require(Path(source) / f"mgsm_{code}.tsv", f"MGSM has no {lang} in {source}")
            # Questions contain no tabs; the answer is the last field. Quotes are literal (csv would eat them).
            rows = [line.rsplit("\t", 1) for line in _read_lines(path) if line.strip()]
        else:
            data = _hub_split(source, code, "test")
            rows = list(zip(data["question"], (str(a) for a in data["answer_number"])))
        examples = [{"id": f"{lang}:{i}", "input": q, "reference": a} for i, (q, a) in enumerate(_cut(rows, limit))]
        units.append(Unit(lang, "math", lang, lang, examples))
    return units


def msvamp(langs, limit=None, source=None, **_) -> list[Unit]:
    """MSVAMP test: `<folder>/test_<English name>.json` (JSON Lines: m_query, response) or a Hub id."""
    source = str(source or DATA_ROOT / "msvamp")
    units = []
    for lang in langs:
        name = languages.BY_NLLB[lang].name
        if _is_local(source):
            path = _require(Path(source) / f"test_{name}.json", f"MSVAMP has no {lang} in {source}")
            rows = [json.loads(line) for line in _read_lines(path) if line.strip()]
        else:
            rows = list(_hub_split(source, name, "test"))
        examples = [
            {"id": f"{lang}:{i}", "input": row["m_query"], "reference": str(row["response"])}
            for i, row in enumerate(_cut(rows, limit))
        ]
        units.append(Unit(lang, "math", lang, lang, examples))
    return units


# ---------------------------------------------------------------- XL-Sum


def xlsum(langs, limit=None, source=None, split="test", **_) -> list[Unit]:
    """XL-Sum in its official JSONL format ({"id","url","title","summary","text"}), one file per language:
    `<folder>/<name>_<split>.jsonl` (as in the official release) or the Hub dataset csebuetnlp/xlsum."""
    source = str(source or "csebuetnlp/xlsum")
    units = []
    for lang in langs:
        name = languages.BY_NLLB[lang].xlsum
        if name is None:
            valid = [lang.short for lang in languages.LANGUAGES if lang.xlsum]
            raise ValueError(f"XL-Sum has no {lang}; valid languages: {', '.join(valid)}")
        if _is_local(source):
            path = _require(Path(source) / f"{name}_{split}.jsonl", f"XL-Sum has no {lang} in {source}")
            rows = [json.loads(line) for line in _read_lines(path) if line.strip()]
        else:
            rows = list(_hub_split(source, name, split))
        examples = [
            {"id": f"{lang}:{row['id']}", "input": row["text"], "reference": row["summary"]}
            for row in _cut(rows, limit)
        ]
        units.append(Unit(lang, "summarize", lang, lang, examples))
    return units


BENCHMARKS = {"flores": flores, "mgsm": mgsm, "xlsum": xlsum, "tatoeba": tatoeba, "msvamp": msvamp}


def load(benchmark: str, langs: list[str], limit=None, source=None, **options) -> list[Unit]:
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; valid benchmarks: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[benchmark](langs, limit=limit, source=source, **options)
