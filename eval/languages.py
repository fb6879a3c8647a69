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


# FLORES-101's file codes (its 101 languages, Chinese in two scripts) and the FLORES-200 / NLLB code of each. Most
# FLORES-200 codes are the FLORES-101 code plus its script; these were renamed (a macrolanguage code became its
# individual language: Arabic -> Standard Arabic, Persian -> Western Persian, ...). A map that guesses instead
# (e.g. by the first NLLB code of the language) scores one language's output against another's references.
FLORES101_CODES = (
    "afr", "amh", "ara", "hye", "asm", "ast", "azj", "bel", "ben", "bos", "bul", "mya", "cat", "ceb", "zho_simpl",
    "zho_trad", "hrv", "ces", "dan", "nld", "eng", "est", "tgl", "fin", "fra", "ful", "glg", "lug", "kat", "deu",
    "ell", "guj", "hau", "heb", "hin", "hun", "isl", "ibo", "ind", "gle", "ita", "jpn", "jav", "kea", "kam", "kan",
    "kaz", "khm", "kor", "kir", "lao", "lav", "lin", "lit", "luo", "ltz", "mkd", "msa", "mal", "mlt", "mri", "mar",
    "mon", "npi", "nso", "nob", "nya", "oci", "ory", "orm", "pus", "fas", "pol", "por", "pan", "ron", "rus", "srp",
    "sna", "snd", "slk", "slv", "som", "ckb", "spa", "swh", "tgk", "tam", "tel", "tha", "tur", "ukr", "umb", "urd",
    "uzb", "vie", "cym", "wol", "xho", "yor", "zul",
)
FLORES101_RENAMED = {
    "ara": "arb_Arab", "fas": "pes_Arab", "ful": "fuv_Latn", "lav": "lvs_Latn", "mon": "khk_Cyrl", "msa": "zsm_Latn",
    "orm": "gaz_Latn", "pus": "pbt_Arab", "uzb": "uzn_Latn", "zho_simpl": "zho_Hans", "zho_trad": "zho_Hant",
}


def flores200_code(code101: str) -> str:
    """The FLORES-200 (NLLB) code of a FLORES-101 code: `kor` -> `kor_Hang`, `zho_trad` -> `zho_Hant`."""
    from languages_xbridge import NLLB_CODES  # noqa: PLC0415  (the bundle's list of NLLB-200 codes)

    if code101 not in FLORES101_CODES:
        raise ValueError(f"{code101!r} is not a FLORES-101 code; valid: {', '.join(FLORES101_CODES)}")
    if code101 in FLORES101_RENAMED:
        return FLORES101_RENAMED[code101]
    (code,) = [c for c in NLLB_CODES if c.split("_")[0] == code101]  # one script each, checked by the tests
    return code


def flores101_code(code200: str) -> str | None:
    """The FLORES-101 code of a FLORES-200 code, None for the 99 languages FLORES-101 does not have."""
    return _FLORES101_BY_200.get(code200)


def _flores101_by_200() -> dict[str, str]:
    try:
        return {flores200_code(code): code for code in FLORES101_CODES}
    except (ImportError, ValueError):  # no NLLB code list in this transformers: the renamed ones at least
        return {v: k for k, v in FLORES101_RENAMED.items()}


_FLORES101_BY_200 = _flores101_by_200()
