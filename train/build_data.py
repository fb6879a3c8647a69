"""`python -m train build-data {trilingual,task}`: make XBridge training records by translating English with NLLB.

- `trilingual`: x-en pairs (two parallel text files as OPUS-100 ships them, JSONL with `src_text`/`en_text`, or a
  `datasets` source with an OPUS-style `translation` column) -> stage-1 records `src_text, src_lang, en_text,
  tgt_text, tgt_lang`; each pair gets one target language y from `--tgt_langs` (a fixed function of the record
  number and `--seed`), and y's text is NLLB's translation of the English side (the x side itself when y = x).
- `task`: records `question, src_lang, answer_en` (+ `instruction`) -> stages 2-3 records with `answer_tgt` in
  `tgt_lang` (the record's own, else `--tgt_lang`, else its `src_lang`), translated line by line so that the
  step-by-step layout of a reasoning answer survives (NLLB is a sentence-level model).

Output: `shard-00000.jsonl, ...` of `--shard_size` records in `--output_dir`, each written to a temporary file
and renamed, so a killed run leaves only complete shards; a rerun skips them (resume). `build_args.json` records
the arguments: resuming with different ones is refused rather than silently mixing two data sets. Decoding is
greedy/beam search without sampling, in input order: the same inputs give the same bytes.
"""

import argparse
import hashlib
import json
import logging
import os

import torch
from tqdm.auto import tqdm

from configuration_xbridge import ENGLISH

from .data import DataError, _lang_error, load_records

logger = logging.getLogger(__name__)


class Translator:
    """Batched translation from English (NLLB, or any family of `languages_xbridge.FAMILIES`), grouped by target
    language, longest-first inside a batch order.

    `engine`: "transformers" (`generate()`) or "ctranslate2" (CTranslate2, converted once next to the checkpoint;
    `compute_type` float32 / int8 / int8_float16 / bfloat16 as the device allows): `nmt_engine.py`."""

    def __init__(self, nmt_name_or_path: str, batch_size: int = 32, num_beams: int = 4, max_new_tokens: int = 256,
                 device: str | None = None, dtype: str = "auto", engine: str = "transformers",
                 compute_type: str = "default"):
        from nmt_engine import load_nllb  # noqa: PLC0415

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        self.engine = load_nllb(engine, nmt_name_or_path, device=self.device, dtype=torch_dtype,
                                compute_type=compute_type)
        self.tokenizer = self.engine.tokenizer
        self.batch_size, self.num_beams, self.max_new_tokens = batch_size, num_beams, max_new_tokens
        self.lang_codes = self.engine.inputs.codes  # NLLB codes of the languages this NMT has tags for

    def check_lang(self, code: str, where: str) -> None:
        if code not in self.lang_codes:
            raise DataError(f"{where}: {_lang_error(code, sorted(self.lang_codes))}")

    @torch.no_grad()
    def translate(self, texts: list[str], tgt_langs: list[str]) -> list[str]:
        """English `texts[i]` -> `tgt_langs[i]`. English targets are copied. Deterministic (no sampling)."""
        out = [t if lang == ENGLISH else None for t, lang in zip(texts, tgt_langs)]
        by_lang = {}
        for i, lang in enumerate(tgt_langs):
            if lang != ENGLISH:
                by_lang.setdefault(lang, []).append(i)
        for lang, idx in sorted(by_lang.items()):
            idx = sorted(idx, key=lambda i: -len(texts[i]))  # similar lengths per batch: less padding
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                translated = self.engine.translate([texts[i] for i in chunk], ENGLISH, lang,
                                                   num_beams=self.num_beams, max_new_tokens=self.max_new_tokens,
                                                   max_input_length=512)
                for i, text in zip(chunk, translated):
                    out[i] = text.strip()
        return out

    def translate_by_line(self, texts: list[str], tgt_langs: list[str]) -> list[str]:
        """Translate each non-empty line on its own and keep the line layout."""
        lines, owners = [], []
        for i, text in enumerate(texts):
            for j, line in enumerate(text.split("\n")):
                if line.strip():
                    lines.append(line.strip())
                    owners.append((i, j))
        translated = self.translate(lines, [tgt_langs[i] for i, _ in owners])
        split = [text.split("\n") for text in texts]
        for (i, j), line in zip(owners, translated):
            split[i][j] = line
        return ["\n".join(parts) for parts in split]


def _read_pairs(args) -> list[dict]:
    """x-en pairs from `--src_file/--en_file`, `--input` (JSONL) or `--dataset_name` (OPUS-style `translation`)."""
    if args.src_file or args.en_file:
        if not (args.src_file and args.en_file):
            raise DataError("give both --src_file and --en_file (parallel text files, one sentence per line)")
        with open(args.src_file, encoding="utf-8") as f:
            src = f.read().splitlines()
        with open(args.en_file, encoding="utf-8") as f:
            en = f.read().splitlines()
        if len(src) != len(en):
            raise DataError(f"{args.src_file} has {len(src)} lines but {args.en_file} has {len(en)}")
        return [{"src_text": s, "en_text": e, "_source": f"{args.src_file}: record {i + 1}"}
                for i, (s, e) in enumerate(zip(src, en))]
    ds = load_records(args.input, args.dataset_name, args.dataset_config, args.split)
    rows = []
    for i, ex in enumerate(ds):
        where = ex.get("_source") or f"{args.dataset_name}: record {i + 1}"
        if "translation" in ex:  # OPUS-100 on the Hub: {"translation": {"en": ..., "sw": ...}}
            pair = ex["translation"]
            for key in (args.src_key, args.en_key):
                if key not in pair:
                    raise DataError(f"{where}: field 'translation' has no {key!r} (has {sorted(pair)}); "
                                    "set --src_key/--en_key")
            ex = {"src_text": pair[args.src_key], "en_text": pair[args.en_key], "src_lang": ex.get("src_lang")}
        for field in ("src_text", "en_text"):
            if not isinstance(ex.get(field), str):
                raise DataError(f"{where}: field {field!r} must be a string, got {ex.get(field)!r}"[:200])
        rows.append({"src_text": ex["src_text"], "en_text": ex["en_text"], "src_lang": ex.get("src_lang"),
                     "_source": where})
    return rows


def _pick(langs: list[str], index: int, seed: int) -> str:
    """A fixed, well-spread choice of target language for record `index` (no global RNG state involved)."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return langs[int.from_bytes(digest[:8], "little") % len(langs)]


def _records(args) -> list[dict]:
    if args.kind == "trilingual":
        rows = _read_pairs(args)
        # Skip empty pairs here (OPUS-100 has some) rather than failing later in validation.
        kept = [r for r in rows if r["src_text"].strip() and r["en_text"].strip()]
        if len(kept) < len(rows):
            logger.warning("skipped %d of %d pairs with an empty side", len(rows) - len(kept), len(rows))
        for i, r in enumerate(kept):
            r["src_lang"] = r.get("src_lang") or args.src_lang
            if not r["src_lang"]:
                raise DataError(f"{r['_source']}: no src_lang in the record and no --src_lang given")
            r["tgt_lang"] = _pick(args.tgt_langs, i, args.seed) if args.tgt_langs else r["src_lang"]
        return kept
    ds = load_records(args.input, args.dataset_name, args.dataset_config, args.split)
    rows = []
    for i, ex in enumerate(ds):
        where = ex.get("_source") or f"{args.dataset_name}: record {i + 1}"
        for field in ("question", "answer_en"):
            if not isinstance(ex.get(field), str) or not ex[field].strip():
                raise DataError(f"{where}: field {field!r} must be a non-empty string, got {ex.get(field)!r}"[:200])
        src_lang = ex.get("src_lang") or args.src_lang
        if not src_lang:
            raise DataError(f"{where}: field 'src_lang' is missing and no --src_lang given")
        row = {"question": ex["question"], "src_lang": src_lang, "answer_en": ex["answer_en"],
               "tgt_lang": ex.get("tgt_lang") or args.tgt_lang or src_lang, "_source": where}
        if ex.get("instruction"):
            row["instruction"] = ex["instruction"]
        rows.append(row)
    return rows


def _write_atomic(path: str, rows: list[dict]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def build(args) -> list[str]:
    """Run build-data; returns the shard paths (all of them, written now or before)."""
    if args.kind == "trilingual" and not (args.src_file or args.input or args.dataset_name):
        raise DataError("trilingual: give --src_file/--en_file, --input (JSONL) or --dataset_name")
    os.makedirs(args.output_dir, exist_ok=True)
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in ("output_dir", "command", "func")}
    settings_path = os.path.join(args.output_dir, "build_args.json")
    if os.path.exists(settings_path):
        with open(settings_path) as f:
            before = json.load(f)
        # engine / compute_type: folders built before these options existed used transformers.
        defaults = {"engine": "transformers", "compute_type": "default"}
        changed = {k: (before.get(k, defaults.get(k)), v) for k, v in settings.items()
                   if before.get(k, defaults.get(k)) != v}
        if changed:
            raise DataError(f"{args.output_dir} was built with other arguments {changed} (old, new); "
                            "use a new --output_dir or delete it")
    else:
        with open(settings_path + ".tmp", "w") as f:
            json.dump(settings, f, indent=1)
        os.replace(settings_path + ".tmp", settings_path)

    rows = _records(args)
    if not rows:
        raise DataError("the input data set is empty")
    translator = None
    shards = []
    n_shards = (len(rows) + args.shard_size - 1) // args.shard_size
    todo = [k for k in range(n_shards) if not os.path.exists(os.path.join(args.output_dir, f"shard-{k:05d}.jsonl"))]
    if len(todo) < n_shards:
        logger.info("resuming: %d of %d shards already written", n_shards - len(todo), n_shards)
    bar = tqdm(total=len(rows), desc=f"build-data {args.kind}", unit="rec",
               initial=sum(min(args.shard_size, len(rows) - k * args.shard_size) for k in range(n_shards)
                           if k not in todo))
    for k in range(n_shards):
        path = os.path.join(args.output_dir, f"shard-{k:05d}.jsonl")
        shards.append(path)
        if k not in todo:
            continue
        if translator is None:  # loaded only when there is work left
            translator = Translator(args.nmt_name_or_path, args.batch_size, args.num_beams, args.max_new_tokens,
                                    dtype=args.dtype, engine=args.engine, compute_type=args.compute_type)
        chunk = rows[k * args.shard_size:(k + 1) * args.shard_size]
        for r in chunk:
            for field in ("src_lang", "tgt_lang"):
                translator.check_lang(r[field], f"{r['_source']}: field {field!r}")
        if args.kind == "trilingual":
            need = [r for r in chunk if r["tgt_lang"] != r["src_lang"]]
            for r, text in zip(need, translator.translate([r["en_text"] for r in need], [r["tgt_lang"] for r in need])):
                r["tgt_text"] = text
            for r in chunk:
                r.setdefault("tgt_text", r["src_text"])
            fields = ("src_text", "src_lang", "en_text", "tgt_text", "tgt_lang")
        else:
            texts = translator.translate_by_line([r["answer_en"] for r in chunk], [r["tgt_lang"] for r in chunk])
            for r, text in zip(chunk, texts):
                r["answer_tgt"] = text
            fields = ("question", "src_lang", "answer_en", "answer_tgt", "tgt_lang", "instruction")
        _write_atomic(path, [{f: r[f] for f in fields if f in r} for r in chunk])
        bar.update(len(chunk))
    bar.close()
    return shards


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=["trilingual", "task"], help="trilingual: x-en pairs -> stage-1 records; "
                   "task: English task answers -> stages 2-3 records with answer_tgt")
    p.add_argument("--nmt_name_or_path", required=True, help="NLLB checkpoint that translates (the paper: "
                   "facebook/nllb-200-3.3B)")
    p.add_argument("--output_dir", required=True, help="where shard-*.jsonl go (rerun to resume)")
    p.add_argument("--src_file", help="trilingual: x side, one sentence per line (e.g. opus.en-sw-train.sw)")
    p.add_argument("--en_file", help="trilingual: English side, parallel to --src_file")
    p.add_argument("--input", help="JSONL file/folder/glob: pairs (src_text, en_text[, src_lang]) or task records")
    p.add_argument("--dataset_name", help="a datasets source / Hub id (e.g. Helsinki-NLP/opus-100)")
    p.add_argument("--dataset_config", help="its config (e.g. en-sw)")
    p.add_argument("--split", default="train")
    p.add_argument("--src_key", help="key of the x side in an OPUS-style 'translation' column (e.g. sw)")
    p.add_argument("--en_key", default="en", help="key of the English side in a 'translation' column")
    p.add_argument("--src_lang", help="NLLB code of x when the records lack src_lang (e.g. swh_Latn)")
    p.add_argument("--tgt_langs", type=lambda s: [c for c in s.split(",") if c], default=None,
                   help="trilingual: comma-separated NLLB codes to draw y from (default: y = x)")
    p.add_argument("--tgt_lang", help="task: target language when a record has none (default: its src_lang)")
    p.add_argument("--seed", type=int, default=0, help="seed of the target-language choice")
    p.add_argument("--shard_size", type=int, default=10000)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--num_beams", type=int, default=4)
    p.add_argument("--max_new_tokens", type=int, default=256)
    p.add_argument("--dtype", default="auto", help="transformers engine: weights dtype of the translating model "
                   "(auto, bfloat16, ...)")
    p.add_argument("--engine", default="transformers", choices=["transformers", "ctranslate2"],
                   help="transformers generate(), or CTranslate2 (several times faster; pip install "
                        "\"xbridge[fast]\"; the checkpoint is converted once, next to it)")
    p.add_argument("--compute_type", default="default", help="ctranslate2: float32, int8, int8_float16, bfloat16, "
                   "... as the device allows (default: float32 on CPU, bfloat16/float16 on GPU)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m train build-data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    args = p.parse_args(argv)
    shards = build(args)
    print(f"{len(shards)} shard(s) in {args.output_dir}")


__all__ = ["Translator", "build", "main"]
