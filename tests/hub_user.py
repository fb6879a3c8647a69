"""A saved bridge loaded as a Hub user loads it: a new interpreter, outside the checkout, through the Auto classes
with `trust_remote_code` (so the bundle's remote code, not this repository's modules, runs)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

LOAD_AND_GENERATE = """
    import json, sys
    assert not any(p.rstrip("/").endswith("main") or p.endswith("tests") for p in sys.path if p), sys.path
    from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoProcessor
    model = AutoModel.from_pretrained({repo!r}, trust_remote_code=True).eval()
    assert type(model) is type(AutoModelForSeq2SeqLM.from_pretrained({repo!r}, trust_remote_code=True))
    processor = AutoProcessor.from_pretrained({repo!r}, trust_remote_code=True)
    batch = processor({questions!r}, src_lang={lang!r})
    ids = model.generate(**batch, tgt_lang={lang!r}, max_new_tokens=6)
    print(json.dumps({{"ids": ids.tolist(), "class": type(model).__name__, "module": type(model).__module__,
                      "llm": model.config.llm_name_or_path, "stage": model.config.stage}}))
"""


def run_fresh_python(code: str, cwd: Path, env_extra: dict | None = None, timeout: int = 600) -> str:
    """Run `code` in a new interpreter with the project NOT on its path (PYTHONPATH dropped); its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(env_extra or {})
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def load_and_generate(repo, questions: list[str], cwd: Path, env_extra: dict | None = None, lang: str = "swh_Latn") -> dict:
    """AutoModel + AutoProcessor from `repo` (a folder or Hub id) in a fresh process, greedy `lang` ids of
    `questions` (read in `lang`, written in `lang`): {"ids", "class", "module", "llm", "stage"}."""
    code = LOAD_AND_GENERATE.format(repo=str(repo), questions=questions, lang=lang)
    return json.loads(run_fresh_python(code, cwd, env_extra).splitlines()[-1])


def bundle_differences(folder) -> list[str]:
    """The bundle files that `folder` lacks or holds in another version than the package root's (empty: the same,
    byte for byte)."""
    from hub_xbridge import BUNDLE_FILES

    root, folder = Path(__file__).resolve().parents[1], Path(folder)
    return [name for name in BUNDLE_FILES
            if not (folder / name).is_file() or (folder / name).read_bytes() != (root / name).read_bytes()]
