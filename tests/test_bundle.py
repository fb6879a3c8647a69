"""One bundle: every checkpoint's remote code is the package root's, byte for byte (`hub_xbridge.write_bundle` is the
one place that writes it). A stale copy once shipped a processor without a fix of the root's."""

import subprocess
from pathlib import Path

import pytest

from hub_user import bundle_differences
from hub_xbridge import BUNDLE_FILES, write_bundle
from miniworld import shipped

ROOT = Path(__file__).resolve().parents[1]


def shipped_bundles() -> list[Path]:
    """Every folder of the repository, other than the root, that holds a bundle file (tracked or not)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*_xbridge.py"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
        files = [ROOT / name for name in listed]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: the package's shipped checkpoints
        files = list((ROOT / "miniworld" / "checkpoints").rglob("*_xbridge.py"))
    return sorted({path.parent for path in files if path.parent != ROOT})


def test_the_bundle_lists_every_bundle_module():
    assert sorted(BUNDLE_FILES) == sorted(p.name for p in ROOT.glob("*_xbridge.py"))


def test_every_shipped_bundle_is_the_root_bundle():
    folders = shipped_bundles()
    assert ROOT / "miniworld" / "checkpoints" / "bridge" in folders
    assert {str(folder.relative_to(ROOT)): bundle_differences(folder) for folder in folders} == {
        str(folder.relative_to(ROOT)): [] for folder in folders}


def test_shipped_checksums_cover_the_republished_bundle():
    shipped.verify()  # SHA256SUMS was refreshed with the files
    sums = shipped.expected_sums()
    assert {f"bridge/{name}" for name in BUNDLE_FILES} <= set(sums)


def test_save_pretrained_writes_the_whole_bundle(tiny_bridge, tmp_path):
    model, processor = tiny_bridge
    model.save_pretrained(tmp_path / "bridge")
    assert bundle_differences(tmp_path / "bridge") == []
    processor.save_pretrained(tmp_path / "bridge")  # copies its own files again: still the same bytes
    assert bundle_differences(tmp_path / "bridge") == []


def test_a_bridge_loaded_as_remote_code_saves_its_bundle_again(tiny_bridge, tmp_path):
    """From the Hub modules cache (where trust_remote_code put the files) the bundle is complete too."""
    from transformers import AutoModel

    model, processor = tiny_bridge
    model.save_pretrained(tmp_path / "first")
    remote = AutoModel.from_pretrained(tmp_path / "first", trust_remote_code=True)
    assert type(remote).__module__.startswith("transformers_modules")
    remote.save_pretrained(tmp_path / "again")
    assert bundle_differences(tmp_path / "again") == []


def test_write_bundle(tmp_path):
    written = write_bundle(tmp_path / "new")
    assert [Path(p).name for p in written] == list(BUNDLE_FILES) and bundle_differences(tmp_path / "new") == []
    (tmp_path / "new" / "modeling_xbridge.py").write_text("# stale\n")
    write_bundle(tmp_path / "new")  # an old copy is overwritten
    assert bundle_differences(tmp_path / "new") == []
    assert write_bundle(ROOT) == [str(ROOT / name) for name in BUNDLE_FILES]  # into its own folder: nothing to copy


@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_bundle_modules_need_only_torch_and_transformers(name):
    """The flat bundle imports torch, transformers (and what they bring), a few standard modules and its own files,
    relatively."""
    import re

    source = (ROOT / name).read_text(encoding="utf-8")
    imported = set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_][\w]*)", source, flags=re.MULTILINE))
    own = {Path(n).stem for n in BUNDLE_FILES}
    assert imported <= {"torch", "transformers", "safetensors", "huggingface_hub", "json", "os", "shutil", "difflib",
                        "warnings", "contextlib", "dataclasses", "typing", "re", "importlib", *own}, imported
