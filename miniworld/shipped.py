"""The mini-world's pretrained checkpoints, shipped inside the package the way NLLB-200 and Qwen are downloaded:
the NLLB-architecture translation model, the English LLM and the trained demo bridge.

    from miniworld.shipped import checkpoint
    checkpoint("xbridge-miniworld/bridge")   # -> absolute folder, from any working directory, offline

Each lives in `miniworld/checkpoints/<name>/` with a model card (`README.md`: how it was trained, its metrics, the
command that rebuilds it) and `metrics.json`; `miniworld/checkpoints/SHA256SUMS` holds every file's checksum
(`verify()`). The bridge names its bases `../nmt` and `../llm` (relative to itself), so the three move together.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .runs import DONE, sha256

ROOT = Path(__file__).resolve().parent / "checkpoints"
NAMESPACE = "xbridge-miniworld"
NAMES = ("nmt", "llm", "bridge", "nmt-general", "llm-llama", "llm-qwen2", "llm-gemma")
SUMS = ROOT / "SHA256SUMS"


def checkpoint(name: str) -> str:
    """Absolute folder of a shipped checkpoint, by stable id (`xbridge-miniworld/nmt`) or short name (`nmt`)."""
    short = name.removeprefix(f"{NAMESPACE}/")
    if short not in NAMES:
        raise ValueError(f"unknown shipped checkpoint {name!r}; shipped: {[f'{NAMESPACE}/{n}' for n in NAMES]}")
    folder = ROOT / short
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} holds no checkpoint: the package was installed without its checkpoints "
                                f"(reinstall from a full checkout), or rebuild them with `python -m miniworld bases`")
    return str(folder)


def metrics(name: str) -> dict:
    """The metrics measured when the checkpoint was made (`metrics.json` next to it)."""
    return json.loads((Path(checkpoint(name)) / "metrics.json").read_text())


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def expected_sums() -> dict[str, str]:
    if not SUMS.exists():
        return {}
    return {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in SUMS.read_text().splitlines() if line.strip()}


def verify() -> None:
    """Every shipped file matches `SHA256SUMS` (and no file is missing); raises naming the first that does not."""
    sums = expected_sums()
    if not sums:
        raise FileNotFoundError(f"{SUMS} is missing: the checkpoints were not published")
    for rel, digest in sums.items():
        path = ROOT / rel
        if not path.exists():
            raise FileNotFoundError(f"shipped file {path} is missing")
        if sha256(path) != digest:
            raise ValueError(f"shipped file {path} does not match its checksum in {SUMS}: modified or corrupted")


def publish(name: str, source: str | Path, card: str, info: dict) -> Path:
    """Copy a finished checkpoint folder into the package as `name` (atomically: staged, then renamed over the
    old one), with its model card and metrics, and refresh SHA256SUMS. Trainer leftovers are not shipped."""
    if name not in NAMES:
        raise ValueError(f"unknown shipped checkpoint {name!r}; shipped: {list(NAMES)}")
    ROOT.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=ROOT))
    skip = {DONE, "training_args.bin", "trainer_state.json", "train.log", "all_results.json", "train_results.json"}
    for path in _files(Path(source)):
        rel = path.relative_to(source)
        if rel.parts[0] in ("trainer", "checkpoints") or path.name in skip or rel.parts[0].startswith("checkpoint-"):
            continue
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, stage / rel)
    (stage / "README.md").write_text(card, encoding="utf-8")
    stage.chmod(0o755)  # mkdtemp and safetensors create owner-only entries; shipped files are world-readable
    for path in stage.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (stage / "metrics.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    target = ROOT / name
    old = ROOT / f".{name}-old"
    if target.exists():
        os.replace(target, old)
    os.replace(stage, target)
    shutil.rmtree(old, ignore_errors=True)
    _write_sums()
    return target


def _write_sums() -> None:
    lines = [f"{sha256(p)}  {p.relative_to(ROOT).as_posix()}" for name in NAMES if (ROOT / name).exists()
             for p in _files(ROOT / name)]
    tmp = SUMS.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, SUMS)
