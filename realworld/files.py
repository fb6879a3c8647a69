"""Helpers shared by the fetcher and the converters: SHA-256 of a file, folders / files written atomically (written
under a temporary name beside the destination, then renamed into place: an interrupted run leaves nothing
half-written under the real name), and the converters' command-line ending."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike):
    """`with atomic_dir(dest) as tmp:` write the folder's files into `tmp`; on success `tmp` replaces `dest` (an
    existing `dest` is removed first), on any error `tmp` is removed and `dest` is left as it was."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """`with atomic_file(path) as fh:` write bytes to `fh`; on success the file replaces `path` (mode 0644), on any
    error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def report(make, errors) -> int:
    """A converter's `main` ending: run `make()`, print the folder it returns (exit status 0) or `error: ...` on
    stderr for one of the expected `errors` (exit status 2)."""
    try:
        path = make()
    except errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0
