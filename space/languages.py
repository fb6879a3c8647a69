"""Human-readable names for NLLB-200 language codes, for the Space's dropdowns.

Only the commonly used codes are named; any other code (another NLLB code, or a private-use code such as the
mini-world's `qaa_Latn`) is shown as the code itself, so every language a checkpoint knows stays selectable.
"""

import difflib

NLLB_NAMES = {
    "afr_Latn": "Afrikaans", "amh_Ethi": "Amharic", "arb_Arab": "Arabic (Modern Standard)", "ary_Arab": "Arabic (Moroccan)",
    "arz_Arab": "Arabic (Egyptian)", "asm_Beng": "Assamese", "azj_Latn": "Azerbaijani (North)", "bel_Cyrl": "Belarusian",
    "ben_Beng": "Bengali", "bos_Latn": "Bosnian", "bul_Cyrl": "Bulgarian", "cat_Latn": "Catalan", "ces_Latn": "Czech",
    "ckb_Arab": "Kurdish (Central)", "cym_Latn": "Welsh", "dan_Latn": "Danish", "deu_Latn": "German", "ell_Grek": "Greek",
    "eng_Latn": "English", "est_Latn": "Estonian", "eus_Latn": "Basque", "fin_Latn": "Finnish", "fra_Latn": "French",
    "gle_Latn": "Irish", "glg_Latn": "Galician", "guj_Gujr": "Gujarati", "hau_Latn": "Hausa", "heb_Hebr": "Hebrew",
    "hin_Deva": "Hindi", "hrv_Latn": "Croatian", "hun_Latn": "Hungarian", "hye_Armn": "Armenian", "ibo_Latn": "Igbo",
    "ind_Latn": "Indonesian", "isl_Latn": "Icelandic", "ita_Latn": "Italian", "jav_Latn": "Javanese", "jpn_Jpan": "Japanese",
    "kan_Knda": "Kannada", "kat_Geor": "Georgian", "kaz_Cyrl": "Kazakh", "khm_Khmr": "Khmer", "kin_Latn": "Kinyarwanda",
    "kir_Cyrl": "Kyrgyz", "kor_Hang": "Korean", "lao_Laoo": "Lao", "lit_Latn": "Lithuanian", "lvs_Latn": "Latvian",
    "mal_Mlym": "Malayalam", "mar_Deva": "Marathi", "mkd_Cyrl": "Macedonian", "mya_Mymr": "Burmese", "nld_Latn": "Dutch",
    "nob_Latn": "Norwegian Bokmål", "npi_Deva": "Nepali", "nso_Latn": "Northern Sotho", "ory_Orya": "Odia",
    "pan_Guru": "Punjabi (Eastern)", "pes_Arab": "Persian (Western)", "pol_Latn": "Polish", "por_Latn": "Portuguese",
    "ron_Latn": "Romanian", "rus_Cyrl": "Russian", "sin_Sinh": "Sinhala", "slk_Latn": "Slovak", "slv_Latn": "Slovenian",
    "sna_Latn": "Shona", "som_Latn": "Somali", "spa_Latn": "Spanish", "srp_Cyrl": "Serbian", "swe_Latn": "Swedish",
    "swh_Latn": "Swahili", "tam_Taml": "Tamil", "tel_Telu": "Telugu", "tgk_Cyrl": "Tajik", "tgl_Latn": "Tagalog",
    "tha_Thai": "Thai", "tur_Latn": "Turkish", "ukr_Cyrl": "Ukrainian", "urd_Arab": "Urdu", "uzn_Latn": "Uzbek (Northern)",
    "vie_Latn": "Vietnamese", "wol_Latn": "Wolof", "xho_Latn": "Xhosa", "yor_Latn": "Yoruba", "yue_Hant": "Cantonese",
    "zho_Hans": "Chinese (Simplified)", "zho_Hant": "Chinese (Traditional)", "zsm_Latn": "Malay (Standard)", "zul_Latn": "Zulu",
}


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
