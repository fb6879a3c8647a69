"""Run `eval/` (its loaders, systems, runner, metrics and report) on the mini-world's own test files.

The harness names languages through one table (`eval.languages`); the world's private-use languages are added to
it at run time (`register_languages`, through `eval.languages.register`), after which its MGSM and FLORES loaders read the world's files as they
are (`test/mgsm/mgsm_<short>.tsv`, `test/flores/<code>.devtest`). Everything else is eval/'s own code path.
"""

from __future__ import annotations

import json
from pathlib import Path

from .world import short_code

# The bridge and the LLM are trained on the bare question (no instruction line); the harness's default math
# instruction is switched off with an empty one so every system sees the same question text.
NO_INSTRUCTION = ""


def register_languages(world_dir: str | Path) -> list[str]:
    """Add the world's languages to eval's language table (`eval.languages.register`); returns their codes."""
    from eval import languages as table  # noqa: PLC0415

    info = json.loads((Path(world_dir) / "world.json").read_text())
    codes = list(info["languages"])
    for code in codes:
        if code in table.BY_NLLB:
            continue
        # sacrebleu's char tokenizer for the scripts written without a word tokenizer of their own
        # no Tatoeba/XL-Sum/ROUGE data for them; sacrebleu's 13a splits their space-separated words fine
        table.register(table.Language(short_code(code), code, f"Mini-{short_code(code)}", None, None, None, "13a"))
    return codes


def run_benchmark(benchmark: str, system: str, world_dir: str | Path, out: str | Path, langs: list[str],
                  batch_size: int = 50, max_new_tokens: int = 64, **models) -> dict:
    """One `python -m eval <benchmark> --system <system>` run on the world's test files (in process)."""
    from eval.runner import run  # noqa: PLC0415

    register_languages(world_dir)
    source = Path(world_dir) / "test" / ("mgsm" if benchmark == "mgsm" else "flores")
    kind = "math" if benchmark == "mgsm" else "translate"
    return run(benchmark, system, langs, str(out), source=str(source), batch_size=batch_size, device="cpu",
               dtype="float32", instruction=NO_INSTRUCTION, max_new_tokens={kind: max_new_tokens}, comet_model=None,
               directions=["x-en", "en-x"] if benchmark == "flores" else None, **models)
