"""XBridge configuration: an NLLB-200 (M2M100) translation model and a causal LLM joined by mapping layers.

Part of the flat Hub bundle (`configuration_xbridge.py`, `modeling_xbridge.py`, `processing_xbridge.py`,
`hub_xbridge.py`, `languages_xbridge.py`; the list is `hub_xbridge.BUNDLE_FILES`): only torch and transformers are
imported here, so `trust_remote_code` loading needs nothing else. Above `languages_xbridge.py` (the NMT families'
language control), below the others: they import from it, never the other way round.
"""

import difflib

from transformers import AutoConfig, PreTrainedConfig
from transformers.utils import logging

try:  # relative import for the Hub bundle; plain import when the project root is on sys.path
    from .languages_xbridge import is_lang_code, language_control, nllb_lang_codes
except ImportError:
    from languages_xbridge import is_lang_code, language_control, nllb_lang_codes

logger = logging.get_logger(__name__)

# The LLM's language: `tgt_lang=ENGLISH` is the LLM's own answer, every other code is written by the NLLB decoder.
ENGLISH = "eng_Latn"
ENCODER_FUSIONS = ("last", "global_softmax", "token_softmax")
AUTO_MAP = {
    "AutoConfig": "configuration_xbridge.XBridgeConfig",
    "AutoModel": "modeling_xbridge.XBridgeForConditionalGeneration",
    "AutoModelForSeq2SeqLM": "modeling_xbridge.XBridgeForConditionalGeneration",
    "AutoProcessor": "processing_xbridge.XBridgeProcessor",
}


def _as_config(value, default_model_type: str, field: str):
    """A sub-config from a config object (copied, so the caller's live config is never mutated), a dict or None."""
    if value is None:
        return AutoConfig.for_model(default_model_type)
    if isinstance(value, PreTrainedConfig):
        # Copy: the composite must not share (and later reset) a loaded model's live config, e.g. its
        # `_attn_implementation` (a pitfall seen with transformers 5.x).
        return value.__class__.from_dict(value.to_dict())
    if isinstance(value, dict):
        value = dict(value)
        model_type = value.pop("model_type", default_model_type)
        try:
            return AutoConfig.for_model(model_type, **value)
        except ValueError:
            # A base that brings its own code (e.g. a converted Marian SSRU NMT): its config class is not known
            # until the base is loaded with trust_remote_code; keep the values under their model type until then.
            return type("RemoteCodeConfig", (PreTrainedConfig,), {"model_type": model_type})(**value)
    raise TypeError(f"`{field}` must be a PreTrainedConfig, a dict or None, got {type(value).__name__}")


def suggest_codes(code: str, valid: list[str], n: int = 3) -> list[str]:
    """Closest valid language codes, case-insensitively (so 'swh_latn' suggests 'swh_Latn')."""
    lowered = {c.lower(): c for c in valid}
    close = difflib.get_close_matches(str(code).lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[c] for c in close]


def unknown_lang_error(kind: str, code, valid: list[str], family: str = "nllb") -> ValueError:
    hint = suggest_codes(code, valid)
    did_you_mean = f" did you mean {', '.join(repr(h) for h in hint)}?" if hint else ""
    tags = "" if family == "nllb" else f" (NLLB names of its {family} tags such as {language_control(family).example!r})"
    return ValueError(
        f"unknown {kind} {code!r} for this {family} NMT;{did_you_mean} its {len(valid)} valid codes{tags} are in "
        f"`config.lang_code_to_id` (e.g. {', '.join(sorted(valid)[:5])}, ...)"
    )


def implied_langs(value) -> list[str]:
    """The languages a bilingual NMT's side takes without a language token: `nmt_source_lang` / `nmt_target_lang`
    is one code or several, comma-separated ("por_Latn,eng_Latn": an encoder whose joint vocabulary reads both)."""
    if value is None:
        return []
    return [code.strip() for code in (value.split(",") if isinstance(value, str) else value)]


def check_implied_lang(kind: str, code, implied) -> None:
    """A bilingual NMT reads / writes its implied languages only: any other code is an error that names them."""
    valid = implied_langs(implied)
    if code not in valid:
        role = "writes" if kind == "tgt_lang" else "reads"
        listed = " or ".join(repr(v) for v in valid)
        raise ValueError(f"{kind}={code!r}: this NMT is bilingual and {role} only {listed} (no other "
                         f"{kind} is possible; `tgt_lang='{ENGLISH}'` is the LLM's own English answer)")


class XBridgeConfig(PreTrainedConfig):
    r"""
    Configuration of an [`XBridgeForConditionalGeneration`].

    Args:
        nmt_config (`dict` or `PreTrainedConfig`): config of the NLLB-200 / M2M100 translation model.
        llm_config (`dict` or `PreTrainedConfig`): config of the causal LLM (Qwen2, Llama, Cohere, ...).
        nmt_name_or_path (`str`): Hub id or folder of the NLLB checkpoint; a saved bridge stores a local folder
            relative to its own folder (`../nmt`) and resolves it from there, never from the current directory.
        llm_name_or_path (`str`): Hub id or folder of the LLM checkpoint.
        enc_map_hidden_size (`int`): inner width of the encoder-side mapping block (default: LLM hidden size).
        dec_map_hidden_size (`int`): inner width of the two decoder-side blocks (default: 2 x LLM hidden size).
        llm_layer (`int`): index into the LLM's `hidden_states` whose states feed the decoder (-2: penultimate).
        lambda_llm, lambda_dec, lambda_ot (`float`): loss weights (paper: 1.0, 1.0, 6.0).
        lang_code_to_id (`dict[str, int]`): NLLB language code -> the NMT's token id of that language's tag (its
            family's spelling: `por_Latn` -> `__pt__`, `pt_XX`, `<2pt>`, `>>por<<`); validates `tgt_lang`.
        nmt_family (`str`): how the NMT controls languages (`languages_xbridge.FAMILIES`): "nllb", "m2m100",
            "mbart50" (tags lead the source and follow the decoder start), "madlad", "marian" (tags lead the
            encoder input; the decoder side gets the encoder's states of the tag before its memory).
        encoder_fusion (`str`): how NLLB encoder layers are combined: "last" (paper), "global_softmax", "token_softmax".
        lambda_align (`float`): weight of the optional AlignX-style InfoNCE loss in stage 1 (AlignX: 0.3; 0 = off).
        lambda_lang (`float`): weight of the optional "same language?" matching loss in stage 1 (AlignX: 0.4; 0 = off).
        align_layer (`int`): LLM `hidden_states` index of the alignment loss (default: the middle layer).
        nmt_source_lang, nmt_target_lang (`str`): for a bilingual NMT (its vocabularies hold no language codes, e.g.
            a Marian model, or an encoder and a decoder taken from two directions): the language its encoder
            reads and the one its decoder writes, implied, with no language token; several comma-separated codes
            where one side reads several without a token (a joint vocabulary). None (NLLB): a language-code token
            from `lang_code_to_id` leads the source and the target.
        stage (`int`): last training stage this bridge went through (0: untrained), for model cards.
        bridge_only (`bool`): checkpoints hold only the bridge; the bases are loaded from their names.
    """

    model_type = "xbridge"
    sub_configs = {"nmt_config": AutoConfig, "llm_config": AutoConfig}

    def __init__(
        self,
        nmt_config=None,
        llm_config=None,
        nmt_name_or_path: str | None = None,
        llm_name_or_path: str | None = None,
        enc_map_hidden_size: int | None = None,
        dec_map_hidden_size: int | None = None,
        llm_layer: int = -2,
        lambda_llm: float = 1.0,
        lambda_dec: float = 1.0,
        lambda_ot: float = 6.0,
        lang_code_to_id: dict | None = None,
        nmt_family: str = "nllb",
        encoder_fusion: str = "last",
        lambda_align: float = 0.0,
        lambda_lang: float = 0.0,
        align_layer: int | None = None,
        nmt_source_lang: str | None = None,
        nmt_target_lang: str | None = None,
        stage: int = 0,
        bridge_only: bool = True,
        **kwargs,
    ):
        self.nmt_config = _as_config(nmt_config, "m2m_100", "nmt_config")
        self.llm_config = _as_config(llm_config, "qwen2", "llm_config")
        self.nmt_name_or_path = None if nmt_name_or_path is None else str(nmt_name_or_path)
        self.llm_name_or_path = None if llm_name_or_path is None else str(llm_name_or_path)
        d_llm = self.llm_config.hidden_size
        # Values are converted explicitly: config fields are not type-checked, and CLI overrides arrive as strings.
        self.enc_map_hidden_size = int(enc_map_hidden_size or d_llm)
        self.dec_map_hidden_size = int(dec_map_hidden_size or 2 * d_llm)
        self.llm_layer = int(llm_layer)
        self.lambda_llm, self.lambda_dec, self.lambda_ot = float(lambda_llm), float(lambda_dec), float(lambda_ot)
        self.lang_code_to_id = {str(k): int(v) for k, v in (lang_code_to_id or {}).items()}
        language_control(nmt_family)  # a clear error for an unknown family
        self.nmt_family = nmt_family
        if encoder_fusion not in ENCODER_FUSIONS:
            raise ValueError(f"encoder_fusion={encoder_fusion!r} is not one of {ENCODER_FUSIONS}")
        self.encoder_fusion = encoder_fusion
        self.lambda_align, self.lambda_lang = float(lambda_align), float(lambda_lang)
        self.align_layer = None if align_layer is None else int(align_layer)
        for field, value in (("nmt_source_lang", nmt_source_lang), ("nmt_target_lang", nmt_target_lang)):
            for code in implied_langs(value):
                if not is_lang_code(code):
                    raise ValueError(f"{field}={value!r}: {code!r} is not an NLLB-style language code such as "
                                     "'por_Latn' (several: comma-separated)")
        self.nmt_source_lang, self.nmt_target_lang = nmt_source_lang, nmt_target_lang
        self.stage = int(stage)
        self.bridge_only = bool(bridge_only)
        num_llm_states = self.llm_config.num_hidden_layers + 1  # embeddings + one per layer, as `hidden_states`
        if not -num_llm_states <= self.llm_layer < num_llm_states:
            raise ValueError(
                f"llm_layer={self.llm_layer} is out of range for an LLM with {num_llm_states - 1} layers "
                f"(valid: {-num_llm_states} .. {num_llm_states - 1}, an index into `hidden_states`)"
            )
        kwargs.setdefault("auto_map", dict(AUTO_MAP))
        kwargs.setdefault("is_encoder_decoder", True)
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    @property
    def nmt_hidden_size(self) -> int:
        return self.nmt_config.d_model

    @property
    def llm_hidden_size(self) -> int:
        return self.llm_config.hidden_size

    @property
    def lang_codes(self) -> list[str]:
        """The language codes this bridge's NMT takes: NLLB's from `lang_code_to_id`, a bilingual NMT's implied ones."""
        if self.nmt_target_lang is not None or self.nmt_source_lang is not None:
            return sorted({*implied_langs(self.nmt_source_lang), *implied_langs(self.nmt_target_lang)})
        return list(self.lang_code_to_id)

    def lang_id(self, code: str, kind: str = "tgt_lang") -> int | None:
        """NMT token id of an NLLB language code (None: the bilingual NMT's implied language); a ValueError naming
        the bad code and the valid ones."""
        implied = self.nmt_target_lang if kind == "tgt_lang" else self.nmt_source_lang
        if implied is not None:
            check_implied_lang(kind, code, implied)
            return None
        if code not in self.lang_code_to_id:
            raise unknown_lang_error(kind, code, list(self.lang_code_to_id), self.nmt_family)
        return self.lang_code_to_id[code]

    @property
    def language_control(self):
        """Where this bridge's NMT family puts language tags (`languages_xbridge.LanguageControl`)."""
        return language_control(self.nmt_family)


__all__ = ["ENGLISH", "XBridgeConfig", "check_implied_lang", "implied_langs", "is_lang_code", "nllb_lang_codes"]
