"""Training data: the two record formats, loading from JSONL or any `datasets` source, validation, truncation.

- stage 1 "trilingual" records: `src_text, src_lang, en_text, tgt_text, tgt_lang` (x, its English, y);
- stages 2-3 task records: `question, src_lang, answer_en, answer_tgt, tgt_lang` (+ optional `instruction`).

Errors name the file, the 1-based record number (= the line of a JSONL file) and the field, so a bad line in a
3.6M-record file can be found with `sed -n Np`.
"""

import difflib
import glob
import json
import logging
import os
from collections.abc import Iterable

import datasets

logger = logging.getLogger(__name__)

TRILINGUAL_FIELDS = ("src_text", "src_lang", "en_text", "tgt_text", "tgt_lang")
TASK_FIELDS = ("question", "src_lang", "answer_en", "answer_tgt", "tgt_lang")
OPTIONAL_FIELDS = ("instruction",)

# What each trainer reads; fields a stage does not use may be absent (stage 2 needs no translated answer).
REQUIRED_FIELDS = {
    "stage1": TRILINGUAL_FIELDS,
    "encoder-only-stage1": ("src_text", "src_lang", "en_text"),
    "stage2": ("question", "src_lang", "answer_en"),
    "encoder-only": ("question", "src_lang", "answer_en"),
    "stage3": TASK_FIELDS,
    "sft": ("question", "src_lang", "answer_en"),
}
LANG_FIELDS = ("src_lang", "tgt_lang")
_STRING_FIELDS = sorted({*TRILINGUAL_FIELDS, *TASK_FIELDS, *OPTIONAL_FIELDS})


class DataError(ValueError):
    """A data set problem, with the place it was found."""


def _jsonl_files(path: str) -> list[str]:
    """A file, a directory of `*.jsonl` shards (build-data output) or a glob -> sorted file list."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.jsonl")))
    elif any(c in path for c in "*?["):
        files = sorted(glob.glob(path))
    else:
        if not os.path.exists(path):
            raise DataError(f"{path}: no such file")
        files = [path]
    if not files:
        raise DataError(f"{path}: no .jsonl files found")
    return files


def _scan_jsonl(files: list[str]) -> None:
    """Find the first bad line of JSONL `files` and raise a DataError naming it (used when Arrow cannot load)."""
    for file in files:
        with open(file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{file}: record {lineno}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{file}: record {lineno}: expected a JSON object, got {type(row).__name__}")
                for field in _STRING_FIELDS:
                    if row.get(field) is not None and not isinstance(row[field], str):
                        got = f"{type(row[field]).__name__} {row[field]!r}"[:80]
                        raise DataError(f"{file}: record {lineno}: field {field!r} must be a non-empty string, "
                                        f"got {got}")


def _record_lines(files: list[str]) -> list[str]:
    """`file: record N` for every non-blank line, N = the line number, in file order."""
    where = []
    for file in files:
        with open(file, encoding="utf-8") as f:
            where += [f"{file}: record {n}" for n, line in enumerate(f, 1) if line.strip()]
    return where


def read_jsonl(path: str) -> datasets.Dataset:
    """JSONL file(s) -> Dataset through the `datasets` JSON loader (Arrow, memory-mapped, cached: fine for
    millions of records). Each record keeps its `file: record N` (N = line number) in `_source` for error
    messages; when Arrow cannot load the files (bad JSON, a field with mixed types), the line-by-line scan names
    the offending line."""
    files = _jsonl_files(path)
    where = _record_lines(files)
    if not where:
        raise DataError(f"{path}: the data set is empty")
    try:
        ds = datasets.load_dataset("json", data_files=files, split="train")
    except Exception as e:  # noqa: BLE001  (Arrow raises many types; the scan below says what is wrong)
        _scan_jsonl(files)
        raise DataError(f"{path}: cannot be read as JSONL ({type(e).__name__}: {e})") from e
    _scan_types(ds, files)
    return ds.add_column("_source", where) if len(ds) == len(where) else ds


def _scan_types(ds: datasets.Dataset, files: list[str]) -> None:
    """Arrow loads a field with numbers or mixed types as a non-string column: the line scan names the record."""
    for field in _STRING_FIELDS:
        feature = ds.features.get(field)
        if feature is not None and not (isinstance(feature, datasets.Value)
                                        and feature.dtype in ("string", "large_string", "null")):
            _scan_jsonl(files)
            raise DataError(f"{files[0]}: field {field!r} must hold strings, the column is {feature}")


def load_records(train_file: str | None = None, dataset_name: str | None = None, dataset_config: str | None = None,
                 split: str = "train") -> datasets.Dataset:
    """JSONL (`train_file`) or a `datasets` source (`dataset_name`: Hub id, local script/folder, or a folder
    written by `Dataset.save_to_disk`)."""
    if (train_file is None) == (dataset_name is None):
        raise DataError("give exactly one of --train_file (JSONL) or --dataset_name (a datasets source / Hub id)")
    if train_file is not None:
        return read_jsonl(train_file)
    if os.path.isdir(dataset_name) and os.path.exists(os.path.join(dataset_name, "dataset_info.json")):
        ds = datasets.load_from_disk(dataset_name)
        ds = ds[split] if isinstance(ds, datasets.DatasetDict) else ds
    else:
        ds = datasets.load_dataset(dataset_name, dataset_config, split=split)
    if len(ds) == 0:
        raise DataError(f"{dataset_name} (split {split!r}): the data set is empty")
    return ds


def _where(ds_name: str, example: dict, index: int) -> str:
    return example.get("_source") or f"{ds_name}: record {index + 1}"


def _lang_error(code, valid: list[str]) -> str:
    close = difflib.get_close_matches(str(code), valid, n=1, cutoff=0.6) or [
        v for v in valid if v.lower() == str(code).lower()]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(valid[:20]) + (f", ... ({len(valid)} in all)" if len(valid) > 20 else "")
    return f"unknown language code {code!r}{hint} valid codes: {shown}"


def validate(ds: datasets.Dataset, kind: str, lang_codes: Iterable[str], name: str = "data") -> None:
    """Check every record of `ds` for the fields of `kind` (a key of REQUIRED_FIELDS) and known language codes."""
    if kind not in REQUIRED_FIELDS:
        raise ValueError(f"unknown record kind {kind!r}; valid: {sorted(REQUIRED_FIELDS)}")
    if len(ds) == 0:
        raise DataError(f"{name}: the data set is empty")
    required = REQUIRED_FIELDS[kind]
    missing = [f for f in required if f not in ds.column_names]
    if missing:
        raise DataError(f"{name}: field {missing[0]!r} is missing from every record (a {kind} record needs "
                        f"{', '.join(required)}; found {', '.join(c for c in ds.column_names if c != '_source')})")
    valid = sorted(lang_codes)
    known = set(valid)
    checked = [f for f in (*required, *OPTIONAL_FIELDS) if f in ds.column_names]
    for i, ex in enumerate(ds.select_columns(checked + (["_source"] if "_source" in ds.column_names else []))):
        for field in checked:
            value = ex[field]
            if field in OPTIONAL_FIELDS and value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                got = "missing/null" if value is None else f"{type(value).__name__} {value!r}"[:80]
                raise DataError(f"{_where(name, ex, i)}: field {field!r} must be a non-empty string, got {got}")
            if field in LANG_FIELDS and value not in known:
                raise DataError(f"{_where(name, ex, i)}: field {field!r}: {_lang_error(value, valid)}")


def _cut(tokenizer, text: str, max_tokens: int, target: bool = False) -> tuple[str, bool]:
    """Cut `text` at a token boundary so that it holds at most `max_tokens` tokens (special tokens not counted);
    `target`: counted as decoder targets (`text_target=`: a bilingual NMT's target vocabulary)."""
    def count(t):
        return len(tokenizer(**{"text_target" if target else "text": t}, add_special_tokens=False)["input_ids"])

    if getattr(tokenizer, "is_fast", False):  # one vocabulary for both sides (NLLB): cut at the exact token offset
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) <= max_tokens:
            return text, False
        return text[: enc["offset_mapping"][max_tokens - 1][1]], True
    if count(text) <= max_tokens:
        return text, False
    # No offsets (a slow tokenizer such as MarianTokenizer, or the target side): the most whole words that fit,
    # found by bisection over the word count (a word boundary is a token boundary for SentencePiece and BPE).
    words, lo, hi = text.split(" "), 0, len(text.split(" "))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if count(" ".join(words[:mid])) <= max_tokens else (lo, mid - 1)
    return " ".join(words[:lo]), True


# field -> (which tokenizer, which limit, decoder target?)
_TRUNCATED = {
    "src_text": ("nmt", "max_source_tokens", False), "question": ("nmt", "max_source_tokens", False),
    "en_text": ("llm", "max_answer_tokens", False), "answer_en": ("llm", "max_answer_tokens", False),
    "tgt_text": ("nmt", "max_target_tokens", True), "answer_tgt": ("nmt", "max_target_tokens", True),
}


def truncate(ds: datasets.Dataset, nmt_tokenizer, llm_tokenizer, max_source_tokens: int | None = None,
             max_answer_tokens: int | None = None, max_target_tokens: int | None = None,
             name: str = "data") -> datasets.Dataset:
    """Cut over-long text fields at a token boundary (text-level, so the collator never truncates) and log how
    many records were cut, per field."""
    limits = {"max_source_tokens": max_source_tokens, "max_answer_tokens": max_answer_tokens,
              "max_target_tokens": max_target_tokens}
    toks = {"nmt": nmt_tokenizer, "llm": llm_tokenizer}
    fields = [f for f in _TRUNCATED if f in ds.column_names and limits[_TRUNCATED[f][1]]]
    if not fields:
        return ds

    def cut(batch):
        out = {f: [] for f in fields}
        out["_cut"] = [[] for _ in batch[fields[0]]]
        for f in fields:
            side, limit_name, target = _TRUNCATED[f]
            tok, limit = toks[side], limits[limit_name]
            for i, text in enumerate(batch[f]):
                text, was_cut = _cut(tok, text, limit, target)
                out[f].append(text)
                if was_cut:
                    out["_cut"][i].append(f)
        return out

    ds = ds.map(cut, batched=True, desc="truncating")
    counts = {}
    for cut_fields in ds["_cut"]:
        for f in cut_fields:
            counts[f] = counts.get(f, 0) + 1
    n_records = sum(1 for c in ds["_cut"] if c)
    if n_records:
        detail = ", ".join(f"{f}: {n} (> {limits[_TRUNCATED[f][1]]} tokens)" for f, n in sorted(counts.items()))
        logger.warning("%s: truncated %d of %d records (%s)", name, n_records, len(ds), detail)
    else:
        logger.info("%s: no record needed truncation", name)
    return ds.remove_columns("_cut")


def prepare(ds: datasets.Dataset, kind: str, lang_codes: Iterable[str], nmt_tokenizer=None, llm_tokenizer=None,
            name: str = "data", **limits) -> datasets.Dataset:
    """validate + truncate: what every trainer calls on its training set."""
    validate(ds, kind, lang_codes, name)
    if nmt_tokenizer is not None and llm_tokenizer is not None:
        ds = truncate(ds, nmt_tokenizer, llm_tokenizer, name=name, **limits)
    return ds


def add_lengths(ds: datasets.Dataset, source_field: str, answer_field: str, nmt_tokenizer, llm_tokenizer,
                column: str = "length") -> datasets.Dataset:
    """Add the `column` of record lengths the length-grouped sampler reads: NLLB tokens of the source + LLM tokens
    of the answer (the two ragged parts of the LLM input; prompts of one stage differ little)."""

    def count(batch):
        src = nmt_tokenizer(batch[source_field], add_special_tokens=False)["input_ids"]
        ans = llm_tokenizer(batch[answer_field], add_special_tokens=False)["input_ids"]
        return {column: [len(a) + len(b) for a, b in zip(src, ans)]}

    if column in ds.column_names:
        ds = ds.remove_columns(column)
    return ds.map(count, batched=True, desc="measuring lengths")
