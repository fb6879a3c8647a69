"""Human-readable names for NLLB-200 language codes, for the Space's dropdowns.

Only the commonly used codes are named; any other code (another NLLB code, or a private-use code such as the
mini-world's `qaa_Latn`) is shown as the code itself, so every language a checkpoint knows stays selectable.
"""

import difflib
from pathlib import Path

# code -> English name: the table beside this file, one `code<TAB>name` line per language
TABLE = Path(__file__).with_name("nllb_names.tsv")
NLLB_NAMES = dict(line.split("\t") for line in TABLE.read_text(encoding="utf-8").splitlines() if line.strip())


def display_name(code: str) -> str:
    """`Swahili (swh_Latn)`; the bare code when it has no name. The code stays visible so it can be searched."""
    name = NLLB_NAMES.get(code)
    return f"{name} ({code})" if name else code


def choices(codes) -> list[tuple[str, str]]:
    """(label, code) pairs for a Gradio dropdown, named languages first in alphabetical order, then bare codes."""
    return sorted(((display_name(c), c) for c in codes), key=lambda pair: (pair[1] not in NLLB_NAMES, pair[0].lower()))


def resolve(value, codes) -> str | None:
    """The code that `value` names: a code, a display name or a plain language name (any case); None if none does."""
    value = str(value or "").strip()
    by_key = {}
    for code in codes:
        for key in (code, display_name(code), NLLB_NAMES.get(code)):
            if key:
                by_key.setdefault(key.lower(), code)
    return by_key.get(value.lower())


def suggestions(value, codes, n: int = 3) -> list[str]:
    """Closest display names to an unknown value, for error messages."""
    labels = {display_name(c).lower(): display_name(c) for c in codes}
    labels.update({c.lower(): display_name(c) for c in codes})
    close = difflib.get_close_matches(str(value).lower(), list(labels), n=n, cutoff=0.5)
    return list(dict.fromkeys(labels[c] for c in close))
