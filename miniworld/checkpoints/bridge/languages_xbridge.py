"""How each NMT family names a language, and where the name goes: the one language-control declaration.

Part of the flat Hub bundle (only transformers is imported). NLLB codes (`por_Latn`) stay the package's names for
languages everywhere; each NMT family maps them to its own tokens and puts them in its own place:

| family    | tag of por_Latn | the source side (what the LLM reads)   | the target side (what the NMT decoder writes) |
| --------- | --------------- | -------------------------------------- | --------------------------------------------- |
| nllb      | `por_Latn`      | the source's own tag leads the source  | its tag follows the decoder start (forced BOS) |
| m2m100    | `__pt__`        | the source's own tag leads the source  | its tag follows the decoder start (forced BOS) |
| mbart50   | `pt_XX`         | the source's own tag leads the source  | its tag follows the decoder start (forced BOS) |
| madlad    | `<2pt>`         | `<2en>` leads the source               | memory prefix (below)                          |
| marian    | `>>por<<`       | `>>eng<<` leads the source, if it has one | memory prefix (below)                       |

A T5 (MADLAD-400) or multi-target Marian decoder learned to read the target language from its *encoder's* states:
the tag leads the encoder input, and the decoder has no language token. XBridge's decoder memory is mapped LLM
states, not the encoder's, so the bridge prepends the frozen NMT encoder's own states of `[tag, </s>]` to that
memory ("memory prefix"): the decoder finds the language where it was trained to look, and the decoder-side mapping
learns around it. Their source side gets the English tag: the encoder reads the text as one it will render in
English, which is what the LLM consumes. A bilingual NMT (no tags; `nmt_source_lang` / `nmt_target_lang`) is the
`marian` family with implied languages.
"""

import json
import re
from dataclasses import dataclass

from transformers.utils import cached_file, logging

logger = logging.get_logger(__name__)

# NLLB-200's languages, in its tokenizer's order (the FLORES-200 codes): the package's canonical names.
try:
    from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES as NLLB_CODES
except ImportError:  # a transformers that moved it: NLLB-style codes are still recognised by shape
    NLLB_CODES = []

# ISO 639-1 codes of NLLB languages (M2M100, mBART-50 and MADLAD-400 name a language by it where it has one, else
# by the 3-letter code, e.g. `__ast__`, `<2ceb>`). Written by hand: transformers holds no such table.
ISO639_1 = {
    "afr_Latn": "af", "aka_Latn": "ak", "als_Latn": "sq", "amh_Ethi": "am", "arb_Arab": "ar", "asm_Beng": "as",
    "ayr_Latn": "ay", "azj_Latn": "az", "bak_Cyrl": "ba", "bam_Latn": "bm", "bel_Cyrl": "be", "ben_Beng": "bn",
    "bod_Tibt": "bo", "bos_Latn": "bs", "bul_Cyrl": "bg", "cat_Latn": "ca", "ces_Latn": "cs", "cym_Latn": "cy",
    "dan_Latn": "da", "deu_Latn": "de", "dzo_Tibt": "dz", "ell_Grek": "el", "eng_Latn": "en", "epo_Latn": "eo",
    "est_Latn": "et", "eus_Latn": "eu", "ewe_Latn": "ee", "fao_Latn": "fo", "fij_Latn": "fj", "fin_Latn": "fi",
    "fra_Latn": "fr", "fuv_Latn": "ff", "gaz_Latn": "om", "gla_Latn": "gd", "gle_Latn": "ga", "glg_Latn": "gl",
    "grn_Latn": "gn", "guj_Gujr": "gu", "hat_Latn": "ht", "hau_Latn": "ha", "heb_Hebr": "he", "hin_Deva": "hi",
    "hrv_Latn": "hr", "hun_Latn": "hu", "hye_Armn": "hy", "ibo_Latn": "ig", "ind_Latn": "id", "isl_Latn": "is",
    "ita_Latn": "it", "jav_Latn": "jv", "jpn_Jpan": "ja", "kan_Knda": "kn", "kas_Arab": "ks", "kat_Geor": "ka",
    "kaz_Cyrl": "kk", "khk_Cyrl": "mn", "khm_Khmr": "km", "kik_Latn": "ki", "kin_Latn": "rw", "kir_Cyrl": "ky",
    "kmr_Latn": "ku", "kon_Latn": "kg", "kor_Hang": "ko", "lao_Laoo": "lo", "lim_Latn": "li", "lin_Latn": "ln",
    "lit_Latn": "lt", "ltz_Latn": "lb", "lug_Latn": "lg", "lvs_Latn": "lv", "mal_Mlym": "ml", "mar_Deva": "mr",
    "mkd_Cyrl": "mk", "mlt_Latn": "mt", "mri_Latn": "mi", "mya_Mymr": "my", "nld_Latn": "nl", "nno_Latn": "nn",
    "nob_Latn": "no", "npi_Deva": "ne", "nya_Latn": "ny", "oci_Latn": "oc", "ory_Orya": "or", "pan_Guru": "pa",
    "pbt_Arab": "ps", "pes_Arab": "fa", "plt_Latn": "mg", "pol_Latn": "pl", "por_Latn": "pt", "quy_Latn": "qu",
    "ron_Latn": "ro", "run_Latn": "rn", "rus_Cyrl": "ru", "sag_Latn": "sg", "san_Deva": "sa", "sin_Sinh": "si",
    "slk_Latn": "sk", "slv_Latn": "sl", "smo_Latn": "sm", "sna_Latn": "sn", "snd_Arab": "sd", "som_Latn": "so",
    "sot_Latn": "st", "spa_Latn": "es", "srd_Latn": "sc", "srp_Cyrl": "sr", "ssw_Latn": "ss", "sun_Latn": "su",
    "swe_Latn": "sv", "swh_Latn": "sw", "tam_Taml": "ta", "tat_Cyrl": "tt", "tel_Telu": "te", "tgk_Cyrl": "tg",
    "tgl_Latn": "tl", "tha_Thai": "th", "tir_Ethi": "ti", "tsn_Latn": "tn", "tso_Latn": "ts", "tuk_Latn": "tk",
    "tur_Latn": "tr", "twi_Latn": "tw", "uig_Arab": "ug", "ukr_Cyrl": "uk", "urd_Arab": "ur", "uzn_Latn": "uz",
    "vie_Latn": "vi", "wol_Latn": "wo", "xho_Latn": "xh", "ydd_Hebr": "yi", "yor_Latn": "yo", "zho_Hans": "zh",
    "zsm_Latn": "ms", "zul_Latn": "zu",
}
# M2M100's one code outside ISO 639 (Northern Sotho: `__ns__`).
M2M100_SPECIAL = {"nso_Latn": "ns"}


def is_lang_code(token: str) -> bool:
    """NLLB language codes look like `swh_Latn`: 3 lowercase letters, '_', a 4-letter script."""
    lang, _, script = str(token).partition("_")
    return len(lang) == 3 and lang.isalpha() and lang.islower() and len(script) == 4 and script.isalpha() and script[0].isupper()


_ISO639_1_BY_LANGUAGE = {code.split("_")[0]: short for code, short in ISO639_1.items()}


def short_code(code: str) -> str:
    """ISO 639-1 where the language has one (any script: `zho_Hant` -> `zh`), else the NLLB code's 3-letter part
    (`ast_Latn` -> `ast`)."""
    lang = code.split("_")[0]
    return _ISO639_1_BY_LANGUAGE.get(lang, lang)


# The first of NLLB's scripts of each language (`zho_Hans`, not `zho_Hant`): the one a bare tag (`<2zh>`) names.
_MAIN_SCRIPTS = set({code.split("_")[0]: code for code in reversed(NLLB_CODES)}.values())


def _is_main_script(code: str) -> bool:
    return code in _MAIN_SCRIPTS or code not in NLLB_CODES


@dataclass(frozen=True)
class LanguageControl:
    """One NMT family's language control: how it spells a language (`tag`), and where the tag goes."""

    family: str
    example: str  # the tag of por_Latn, for messages
    source: str  # "own": the source's own tag leads it; "english": the English tag leads it (if the NMT has one)
    target: str  # "decoder": after the decoder start token; "memory": the encoder's states of the tag, before the memory

    def candidates(self, code: str, regional: dict) -> list[str]:
        """This family's spellings of the NLLB code `code`, the most specific first. `regional`: mBART's tags by
        language (`{"pt": ["pt_XX"]}`, `regional_tags`), the one family whose region cannot be derived."""
        short, lang, script = short_code(code), *code.split("_")
        main = _is_main_script(code)
        if self.family == "nllb":
            return [code]
        if self.family == "m2m100":
            return [f"__{M2M100_SPECIAL.get(code, short)}__"] if main else []
        if self.family == "mbart50":  # `pt_XX`, `zh_CN`: a region, one per language
            return regional.get(short, []) if main else []
        if self.family == "madlad":
            return [f"<2{short}_{script}>"] + ([f"<2{short}>"] if main else [])
        return [f">>{lang}_{script}<<"] + ([f">>{lang}<<"] if main else [])  # marian (Tatoeba-Challenge style)

    def lang_codes(self, tokenizer) -> dict[str, int]:
        """NLLB code -> token id of every language this family's `tokenizer` has a tag for."""
        if self.family == "nllb":  # any NLLB-shaped added token (the mini-world's synthetic languages too)
            return nllb_lang_codes(tokenizer)
        regional, out = regional_tags(tokenizer) if self.family == "mbart50" else {}, {}
        for code in NLLB_CODES:
            ids = [i for i in (_token_id(tokenizer, t) for t in self.candidates(code, regional)) if i is not None]
            if ids and ids[0] not in out.values():
                out[code] = ids[0]
        return out


def regional_tags(tokenizer) -> dict[str, list[str]]:
    """mBART-style `pt_XX` tokens of the vocabulary by language, in one pass over it (not one per language: a real
    mBART-50 vocabulary has 250k entries)."""
    out: dict[str, list[str]] = {}
    for token in sorted(tokenizer.get_vocab()):
        match = re.fullmatch(r"([a-z]{2,3})_[A-Z]{2}", token)
        if match:
            out.setdefault(match.group(1), []).append(token)
    return out


def _token_id(tokenizer, token: str) -> int | None:
    """The id of `token`, None where the tokenizer does not know it. Asked through `convert_tokens_to_ids`, not
    `get_vocab()`: transformers 5's M2M100Tokenizer lists its `__pt__` tags in neither its vocabulary nor its
    added tokens, but converts them."""
    index = tokenizer.convert_tokens_to_ids(token)
    return None if index is None or index == tokenizer.unk_token_id else index


def tagged_ids(tokenizer, texts, lead: int | None = None, target: bool = False) -> list[list[int]]:
    """`[lead] text </s>` (no lead: `text </s>`) for each text: the tokenizer's plain ids with the family's tag and
    the end token put around them, one composition for every family (each tokenizer's own special-token template
    differs, and T5's and Marian's have no place for a language). `target`: the target side, whose tokenizer mode
    matters only where it has a model of its own (Marian's target SentencePiece; M2M100's target mode fails when no
    target language is set)."""
    own_target_side = target and getattr(tokenizer, "spm_target", None) is not None
    encoded = tokenizer(text_target=list(texts), add_special_tokens=False) if own_target_side else \
        tokenizer(list(texts), add_special_tokens=False)
    head = [] if lead is None else [lead]
    return [head + ids + [tokenizer.eos_token_id] for ids in encoded["input_ids"]]


def decode_without_tags(tokenizer, ids, tags, **kwargs) -> str:
    """NMT output as text, special tokens and language tags skipped: not every family's tokenizer marks its tags
    special (transformers 5's M2M100Tokenizer does not)."""
    ids = ids.tolist() if hasattr(ids, "tolist") else ids
    return tokenizer.decode([i for i in ids if i not in tags], skip_special_tokens=True, **kwargs)


FAMILIES = {
    "nllb": LanguageControl("nllb", "por_Latn", source="own", target="decoder"),
    "m2m100": LanguageControl("m2m100", "__pt__", source="own", target="decoder"),
    "mbart50": LanguageControl("mbart50", "pt_XX", source="own", target="decoder"),
    "madlad": LanguageControl("madlad", "<2pt>", source="english", target="memory"),
    "marian": LanguageControl("marian", ">>por<<", source="english", target="memory"),
}


def language_control(family: str) -> LanguageControl:
    if family not in FAMILIES:
        raise ValueError(f"nmt_family={family!r} is not one of {sorted(FAMILIES)} "
                         f"({', '.join(f'{k}: {v.example}' for k, v in FAMILIES.items())})")
    return FAMILIES[family]


def detect_family(tokenizer, model_type: str | None = None) -> str:
    """The family of an NMT from its tokenizer's class (NLLB and M2M100 share the m2m_100 architecture, not a
    tokenizer), else its config's model type. Anything else is NLLB-like: an NMT of its own code (the converted
    SSRU students) is bilingual, with its languages implied (`nmt_source_lang` / `nmt_target_lang`)."""
    name = type(tokenizer).__name__
    for prefix, family in (("Nllb", "nllb"), ("M2M100", "m2m100"), ("MBart50", "mbart50"), ("T5", "madlad"),
                           ("Marian", "marian")):
        if name.startswith(prefix):
            return family
    return {"t5": "madlad", "mt5": "madlad", "umt5": "madlad", "mbart": "mbart50", "marian": "marian"}.get(model_type, "nllb")


def nllb_lang_codes(nmt, **hub_kwargs) -> dict[str, int]:
    """NLLB language code -> token id: of an NLLB tokenizer, or of the NLLB checkpoint `nmt` (a folder or Hub id),
    read from the `tokenizer.json` next to its weights (no tokenizer is built)."""
    if hasattr(nmt, "get_added_vocab"):
        added = nmt.get_added_vocab().items()
    else:
        try:
            path = cached_file(nmt, "tokenizer.json", **hub_kwargs)
        except OSError:
            path = None
        if path is None:
            logger.warning(f"no tokenizer.json next to {nmt}: pass lang_code_to_id= to from_bases")
            return {}
        with open(path, encoding="utf-8") as f:
            added = [(t["content"], t["id"]) for t in json.load(f).get("added_tokens", [])]
    return {token: index for token, index in added if is_lang_code(token)}


__all__ = ["FAMILIES", "ISO639_1", "LanguageControl", "NLLB_CODES", "detect_family", "is_lang_code", "language_control",
           "nllb_lang_codes", "short_code", "tagged_ids", "decode_without_tags"]
