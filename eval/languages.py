"""The one table of languages the harness knows, and the lookups built on it.

Every other module names a language by its NLLB code (`swh_Latn`); users may type either the short code (`sw`)
or the NLLB code. Per-language benchmark file names and metric settings live here too, so adding a language
is one row.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    short: str  # ISO 639-1 style code used by MGSM and in tables
    nllb: str  # NLLB-200 / FLORES-200 code
    name: str  # English name (prompts, MSVAMP file names)
    tatoeba: str | None  # 3-letter code of the Tatoeba Challenge test pair `eng-<x>` (None: not vendored)
    xlsum: str | None  # XL-Sum subset name (also the Hub config of csebuetnlp/xlsum)
    rouge: str | None  # language name understood by multilingual_rouge (segmenter / stemmer selection)
    bleu_tokenizer: str  # sacrebleu tokenizer when the FLORES-200 SentencePiece model is absent


LANGUAGES = [
    Language("en", "eng_Latn", "English", None, "english", "english", "13a"),
    Language("bn", "ben_Beng", "Bengali", "ben", "bengali", "bengali", "13a"),
    Language("de", "deu_Latn", "German", "deu", None, "german", "13a"),
    Language("es", "spa_Latn", "Spanish", "spa", "spanish", "spanish", "13a"),
    Language("fr", "fra_Latn", "French", "fra", "french", "french", "13a"),
    Language("pt", "por_Latn", "Portuguese", "por", "portuguese", "portuguese", "13a"),  # realworld/ (issue 29)
    Language("ja", "jpn_Jpan", "Japanese", "jpn", "japanese", "japanese", "ja-mecab"),
    Language("ru", "rus_Cyrl", "Russian", "rus", "russian", "russian", "13a"),
    Language("sw", "swh_Latn", "Swahili", "swa", "swahili", "swahili", "13a"),
    Language("te", "tel_Telu", "Telugu", None, "telugu", "telugu", "13a"),
    # Thai has no spaces between words: 13a would score whole clauses as single words.
    Language("th", "tha_Thai", "Thai", "tha", "thai", "thai", "char"),
    Language("zh", "zho_Hans", "Chinese", "zho", "chinese_simplified", "chinese", "zh"),
]

BY_NLLB = {lang.nllb: lang for lang in LANGUAGES}
_BY_ANY = {**{lang.short: lang for lang in LANGUAGES}, **BY_NLLB}

# The paper's low-resource group; the report averages over it separately.
LOW_RESOURCE = ("ben_Beng", "swh_Latn", "tha_Thai")
# The paper's ten languages (the CLI default).
PAPER_LANGS = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "th", "zh")


def register(lang: Language) -> Language:
    """Add a language to the table (e.g. the mini-world's synthetic ones); its codes must be new."""
    taken = [code for code in (lang.short, lang.nllb) if code in _BY_ANY]
    if taken:
        raise ValueError(f"language code(s) {taken} already in the table")
    LANGUAGES.append(lang)
    BY_NLLB[lang.nllb] = lang
    _BY_ANY[lang.short] = lang
    _BY_ANY[lang.nllb] = lang
    return lang


def get(code: str) -> Language:
    """The Language for a short (`sw`) or NLLB (`swh_Latn`) code; unknown codes list the valid ones."""
    try:
        return _BY_ANY[code.strip()]
    except KeyError:
        valid = ", ".join(f"{lang.short}/{lang.nllb}" for lang in LANGUAGES)
        raise ValueError(f"unknown language {code!r}; valid languages: {valid}") from None


def to_nllb(code: str) -> str:
    return get(code).nllb


def parse_langs(spec: str | list[str]) -> list[str]:
    """`"sw,th,bn"` or a list of codes -> NLLB codes, order kept, duplicates dropped."""
    items = spec.split(",") if isinstance(spec, str) else spec
    codes = [to_nllb(item) for item in items if item.strip()]
    if not codes:
        raise ValueError("no language given; e.g. --langs sw,th,bn")
    return list(dict.fromkeys(codes))


def short(nllb: str) -> str:
    return BY_NLLB[nllb].short
