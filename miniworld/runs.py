"""Run bookkeeping: finished-step markers, the reuse of a finished step, JSONL files, and the kept results that a
later run (another session, another machine) takes instead of computing them again.

A kept result is keyed on what its job depends on (`job_keys`): the job's function and arguments (the recipe
values), the checksums of the data files and base checkpoints its arguments name, the keys of the jobs it waits
for, and `NUMERICS_VERSION`. Code is not in the key: a comment, a rename or a refactor keeps every kept result valid;
the hash of the code that computed a result, the library versions and the CPU kernels are stored beside it as a
record. Library versions are not in the key either: a fresh install takes the newest transformers, and a patch
release must not void every committed result; an upgrade that does change numbers is a numerics change like any other.

Rule for contributors: a commit that changes a number some job computes (a model's, trainer's, metric's or data
builder's arithmetic, a default a recipe relies on, a library floor raised to a release that computes differently)
bumps `NUMERICS_VERSION`, in the same commit.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from pathlib import Path

from train.machine import PORTABLE_KERNELS, cpu_name

# Written by hand: the results of a pool of training jobs kept across machines and sessions (committed files), keyed
# by what determines them; the Hub and datasets caches key downloads and dataset transforms, not such results.
NUMERICS_VERSION = 1
DONE = "COMPLETED"  # marker file: a folder holding it is a finished step and is reused
REPO = Path(__file__).resolve().parent.parent
SHIPPED_ROOT = REPO / "miniworld" / "checkpoints"
SHIPPED_SUMS = SHIPPED_ROOT / "SHA256SUMS"
# the code whose change may change a result; hashed into each kept result's record, not into its key
RESULT_CODE = ("configuration_xbridge.py", "modeling_xbridge.py", "processing_xbridge.py", "*_xbridge.py",
               "nmt_engine.py", "pyproject.toml", "train/**/*.py", "train/configs/*", "eval/**/*.py", "miniworld/*.py",
               "miniworld/configs/*.yaml")


# ------------------------------------------------------------------------------------------ finished steps
def is_done(folder: str | Path) -> bool:
    return (Path(folder) / DONE).exists()


def done_info(folder: str | Path) -> dict:
    """What a finished step recorded in its marker."""
    return json.loads((Path(folder) / DONE).read_text())


def mark_done(folder: str | Path, info: dict) -> None:
    """Marks `folder` finished, with `info` (atomically: a killed run never leaves half a marker)."""
    _write_atomic(Path(folder) / DONE, json.dumps(info, indent=1).encode())


def reuse(folder: str | Path, field: str, expected, changes) -> bool:
    """Whether `folder` is a finished step to reuse: False if it is not finished; True if its marker's `field`
    matches `expected`; a step finished with other settings raises (a changed recipe must not silently pick up a
    step made with the old one). `changes(recorded, expected) -> {setting: (then, now)}` names what differs
    (empty: the same)."""
    if not is_done(folder):
        return False
    changed = changes(done_info(folder).get(field), expected)
    if changed:
        raise RuntimeError(f"{folder} holds a step made with other settings (setting: (then, now): {changed}); "
                           "delete the folder to make it again, or give the run another --out")
    return True


# ------------------------------------------------------------------------------------------------- files
def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """One JSON object per line, atomically."""
    _write_atomic(Path(path), "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8"))


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(folder: str | Path) -> str:
    """One checksum of every file below `folder` (names and contents), its finished-step marker excepted."""
    folder, digest = Path(folder), hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != DONE):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + sha256(path).encode())
    return digest.hexdigest()


def mark_data_done(folder: str | Path, info: dict) -> None:
    """Marks a folder of generated data finished, with the checksum of its files: the jobs that read it are keyed
    on that checksum (`job_keys`), so data made otherwise is a new key."""
    mark_done(folder, dict(info, data_sha256=tree_sha256(folder)))


# -------------------------------------------------------------------------------------------- kept results
def code_state() -> str:
    """A hash of `RESULT_CODE`'s files: the record of which code computed a kept result (not part of its key)."""
    digest = hashlib.sha256()
    for path in sorted({p for pattern in RESULT_CODE for p in REPO.glob(pattern) if p.is_file()}):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def library_versions() -> str:
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    return f"{sys.version_info[:2]} torch {torch.__version__} transformers {transformers.__version__}"


def qualname(fn) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _strings(value):
    if isinstance(value, (str, Path)):
        yield str(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _existing(text: str) -> Path | None:
    """The file or folder that an argument names (absolute, or relative to the working folder or the repo)."""
    if not text or text == "." or len(text) > 4096 or "\n" in text:
        return None
    for path in (Path(text),) if os.path.isabs(text) else (Path(text), REPO / text):
        try:
            if path.exists():
                return path.resolve()
        except OSError:  # not a path at all (too long a name for the file system)
            return None
    return None


def _data_checksum(folder: Path, memo: dict) -> str | None:
    """The data checksum of `folder` if it is a folder of generated data (`mark_data_done`), else None."""
    if folder not in memo:
        memo[folder] = done_info(folder).get("data_sha256") if is_done(folder) else None
    return memo[folder]


def input_checksums(args, shipped_sums: dict[str, list[str]], memo: dict, folders: dict) -> dict[str, str]:
    """{argument: checksum} of the inputs a job's arguments name: a file of the repository (a recipe) or of a
    folder of generated data (`mark_data_done`), its contents; a shipped checkpoint, its SHA256SUMS lines; a data
    folder, its data checksum. Whatever else an argument names (a job's own output folder or log, a stage it goes
    on from) is not an input: the keys of the jobs that make it cover it. `memo` ({argument: checksum or None})
    and `folders` ({folder: data checksum or None}) carry what is known across the jobs of one plan."""
    sums = {}
    for text in _strings(args):
        if text in memo:
            if memo[text] is not None:
                sums[text] = memo[text]
            continue
        path, value = _existing(text), None
        if path is None:
            pass
        elif path.is_file():
            in_repo = path.is_relative_to(REPO) and not path.is_relative_to(REPO / "runs")
            if in_repo or any(_data_checksum(folder, folders) for folder in path.parents):
                value = sha256(path)
        elif path.parent == SHIPPED_ROOT:
            value = hashlib.sha256("\n".join(shipped_sums.get(path.name, [])).encode()).hexdigest()
        else:
            value = _data_checksum(path, folders)
        memo[text] = value
        if value is not None:
            sums[text] = value
    return sums


def job_keys(jobs, kernels: dict[str, str] | None = None) -> dict[str, str]:
    """{name: key} of `jobs` (jobs.Job): what each depends on (module docstring), and the CPU kernels they run on
    (`kernels`: jobs.run_jobs's; None or {} = each library's native choice, which keeps the keys of results
    computed before the kernels were pinned). This checkout's path is written as `<repo>`, so another checkout
    agrees."""
    pinned = [sorted(kernels.items())] if kernels else []
    by_name, keys, memo, folders = {job.name: job for job in jobs}, {}, {}, {}
    shipped: dict[str, list[str]] = {}
    for line in SHIPPED_SUMS.read_text().splitlines() if SHIPPED_SUMS.exists() else []:
        if line.strip() and not line.endswith(("README.md", "metrics.json")):  # cards and metrics: no numbers
            shipped.setdefault(line.split("  ", 1)[1].split("/")[0], []).append(line)

    def of(name: str) -> str:
        if name not in keys:
            job = by_name[name]
            inputs = {k.replace(str(REPO), "<repo>"): v for k, v in input_checksums(job.args, shipped, memo, folders).items()}
            text = json.dumps([qualname(job.fn), repr(job.args).replace(str(REPO), "<repo>"), inputs,
                               [of(dep) for dep in job.after], NUMERICS_VERSION, *pinned])
            keys[name] = hashlib.sha256(text.encode()).hexdigest()
        return keys[name]

    return {job.name: of(job.name) for job in jobs}


def read_kept(path: str | Path | None, key: str):
    """The result kept in `path` if it was kept under `key`, else None."""
    if not path or not Path(path).exists():
        return None
    with gzip.open(path, "rt", encoding="utf-8") as f:
        kept = json.load(f)
    return kept["result"] if kept["fingerprint"] == key else None


def write_kept(path: str | Path, name: str, key: str, result, code: str | None = None) -> None:
    """Atomically (a killed run never leaves half a file); gzip's timestamp is fixed, so the same result gives the
    same bytes. Beside the result, as records: the code and the library versions that computed it, and the CPU
    kernels (the last bit of a float may differ between AVX2 and AVX512 machines, which a later run on another
    machine may go on from)."""
    import torch  # noqa: PLC0415

    text = json.dumps(dict(job=name, fingerprint=key, code=code or code_state(), libraries=library_versions(),
                           cpu=cpu_name(), job_kernels={k: os.environ[k] for k in PORTABLE_KERNELS if k in os.environ}
                           or f"native ({torch.backends.cpu.get_cpu_capability()})",
                           result=result))  # key order kept
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(text.encode("utf-8"))
    os.replace(tmp, path)


__all__ = ["DONE", "NUMERICS_VERSION", "code_state", "done_info", "is_done", "job_keys", "mark_data_done", "mark_done",
           "read_jsonl", "read_kept", "reuse", "sha256", "tree_sha256", "write_jsonl", "write_kept"]
