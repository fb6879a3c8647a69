"""Translation engines (NLLB, and every family of `languages_xbridge.FAMILIES`) for everything that only translates (`build-data`, the `nmt` and `translate-test`
systems): `transformers` (`generate()`, the default) or `ctranslate2` (CTranslate2, an optional dependency).

Beside the bundle, not in it (no checkpoint carries it): a shared piece that `train/` and `eval/` both import
downward, so neither imports the other.

    engine = load_nllb("ctranslate2", "facebook/nllb-200-distilled-600M", compute_type="int8")
    engine.translate(["Hello."], "eng_Latn", "swh_Latn", num_beams=4, max_new_tokens=128)

Both engines decode the same way (forced target-language code after `</s>`, no sampling, `max_new_tokens`
counting the language code and `</s>` as `generate()` does), so in float32 they give the same text.
CTranslate2 needs the checkpoint converted to its format: that happens once, into `<checkpoint>-ct2/` next to a
local checkpoint folder (into the Hugging Face cache folder of a Hub checkpoint), written to a temporary folder
and renamed, so a killed conversion never leaves a half model behind. The weights are kept in float32 there and
quantised when loaded (`compute_type`), so one conversion serves every compute type.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import torch

from languages_xbridge import decode_without_tags, detect_family, language_control, tagged_ids

logger = logging.getLogger(__name__)

ENGINES = ("transformers", "ctranslate2")
INSTALL_HINT = 'pip install "xbridge[fast]"  (or: pip install "ctranslate2>=4")'
# CTranslate2 compute types this project offers; which ones a device runs is asked from CTranslate2 itself.
COMPUTE_TYPES = ("default", "float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "float16", "bfloat16")


def check_engine(name: str) -> str:
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; valid engines: {', '.join(ENGINES)}")
    return name


def import_ctranslate2():
    try:
        import ctranslate2  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(f"--engine ctranslate2 needs the CTranslate2 package, which is not installed: "
                          f"{INSTALL_HINT}; or use --engine transformers") from e
    return ctranslate2


def _local_folder(path: str) -> str:
    """A local checkpoint folder for `path` (a folder, or a Hub id resolved through the Hugging Face cache)."""
    if os.path.isdir(path):
        return os.path.abspath(path)
    from huggingface_hub import snapshot_download  # noqa: PLC0415

    return snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.model", "*.txt"])


def converted_path(path: str) -> str:
    """Where the CTranslate2 copy of checkpoint `path` lives (next to it)."""
    return _local_folder(path).rstrip(os.sep) + "-ct2"


def convert(path: str) -> str:
    """Convert checkpoint `path` (M2M100 / NLLB) to CTranslate2 once; returns the converted folder.

    The result is written to `<target>.tmp-<pid>` and renamed into place: concurrent or killed conversions never
    leave a partial model at `<target>`; the first finished one wins and the others are discarded."""
    ct2 = import_ctranslate2()
    source = _local_folder(path)
    target = source.rstrip(os.sep) + "-ct2"
    if os.path.isfile(os.path.join(target, "model.bin")):
        return target
    tmp = f"{target}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    logger.info("converting %s to CTranslate2 (once) -> %s", path, target)
    # float32 on disk: any compute type (int8, bf16, ...) is then a load-time choice.
    ct2.converters.TransformersConverter(source).convert(tmp, quantization="float32", force=True)
    with open(os.path.join(tmp, "xbridge_conversion.json"), "w") as f:
        json.dump({"source": path, "ctranslate2": ct2.__version__}, f)
    try:
        os.rename(tmp, target)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isfile(os.path.join(target, "model.bin")):
            raise
    return target


def supported_compute_types(device: str) -> list[str]:
    ct2 = import_ctranslate2()
    return sorted(ct2.get_supported_compute_types(device))


def pick_compute_type(device: str, requested: str = "default") -> str:
    """`requested` if the device runs it; "default" = float32 on CPU, bfloat16 (else float16) on a GPU."""
    if requested not in COMPUTE_TYPES:
        raise ValueError(f"unknown compute type {requested!r}; valid: {', '.join(COMPUTE_TYPES)}")
    available = supported_compute_types(device)
    if requested == "default":
        for choice in (("float32",) if device == "cpu" else ("bfloat16", "float16", "float32")):
            if choice in available:
                return choice
        return available[0]
    if requested not in available:
        raise ValueError(f"compute type {requested!r} is not supported on {device}; this device offers: "
                         f"{', '.join(available)}")
    return requested


class TranslationInputs:
    """How a plain translation (no bridge) is asked of this NMT's family (`languages_xbridge.FAMILIES`): NLLB,
    M2M100, mBART-50 `[src_tag] text </s>` and the target tag forced after the decoder start; T5 (MADLAD-400) and
    Marian `[tgt_tag] text </s>` (the encoder input names the language to write) and no forced token; a bilingual
    NMT no tag at all."""

    def __init__(self, tokenizer, model_type: str | None):
        self.tokenizer = tokenizer
        self.control = language_control(detect_family(tokenizer, model_type))
        self.codes = self.control.lang_codes(tokenizer)

    def tag(self, lang: str) -> int | None:
        if self.codes and lang not in self.codes:
            raise ValueError(f"this {self.control.family} NMT has no tag for {lang!r}; it has {sorted(self.codes)}")
        return self.codes.get(lang)

    def source_ids(self, texts, src_lang: str, tgt_lang: str, max_length: int | None) -> list[list[int]]:
        """Truncated as the tokenizers truncate (`truncation=True`): the text, never the tag or the end token."""
        lead = self.tag(tgt_lang if self.control.target == "memory" else src_lang)
        ids = tagged_ids(self.tokenizer, texts, lead)
        if max_length is None and self.tokenizer.model_max_length < 1e6:  # what `truncation=True` alone cuts at
            max_length = self.tokenizer.model_max_length
        if max_length is not None:
            ids = [x if len(x) <= max_length else x[: max_length - 1] + x[-1:] for x in ids]
        return ids

    def forced_target(self, tgt_lang: str) -> int | None:
        return self.tag(tgt_lang) if self.control.target == "decoder" else None

    def decode(self, rows) -> list[str]:
        tags = set(self.codes.values())
        return [decode_without_tags(self.tokenizer, row, tags) for row in rows]


class TransformersNLLB:
    """`generate()` on a seq2seq checkpoint of any family in `languages_xbridge.FAMILIES` (NLLB by default)."""

    engine = "transformers"

    def __init__(self, path: str, device: str = "cpu", dtype=torch.float32, tokenizer=None, model=None):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer  # noqa: PLC0415

        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
        self.model = model if model is not None else AutoModelForSeq2SeqLM.from_pretrained(path, dtype=dtype)
        self.model = self.model.to(device).eval()
        self.device = device
        self.inputs = TranslationInputs(self.tokenizer, self.model.config.model_type)

    @torch.no_grad()
    def translate(self, texts, src_lang, tgt_lang, num_beams: int = 1, max_new_tokens: int = 128,
                  max_input_length: int | None = None) -> list[str]:
        ids = self.inputs.source_ids(texts, src_lang, tgt_lang, max_input_length)
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        ids = self.model.generate(**batch, forced_bos_token_id=self.inputs.forced_target(tgt_lang),
                                  num_beams=num_beams, do_sample=False, max_new_tokens=max_new_tokens)
        return self.inputs.decode(ids.tolist())


class CTranslate2NLLB:
    """The same translation through CTranslate2 (converted once, cached next to the checkpoint)."""

    engine = "ctranslate2"

    def __init__(self, path: str, device: str = "cpu", compute_type: str = "default", threads: int = 0,
                 tokenizer=None):
        ct2 = import_ctranslate2()
        from transformers import AutoTokenizer  # noqa: PLC0415

        device = "cuda" if str(device).startswith("cuda") else "cpu"
        self.compute_type = pick_compute_type(device, compute_type)
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
        folder = convert(path)
        try:
            from transformers import AutoConfig  # noqa: PLC0415

            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError):
            config = None
        self.inputs = TranslationInputs(self.tokenizer, getattr(config, "model_type", None))
        threads = threads or torch.get_num_threads()  # the process's setting, as generate() uses it
        self.translator = ct2.Translator(folder, device=device, compute_type=self.compute_type,
                                         intra_threads=threads if device == "cpu" else 0)
        self.device = device
        # CTranslate2 keeps the checkpoint's table of sinusoidal positions and refuses positions beyond it, where
        # generate() would extend the table: inputs and outputs are capped at it (1024 for NLLB-200).
        self.max_positions = getattr(config, "max_position_embeddings", None)

    def translate(self, texts, src_lang, tgt_lang, num_beams: int = 1, max_new_tokens: int = 128,
                  max_input_length: int | None = None) -> list[str]:
        if not texts:
            return []
        limit = self.max_positions
        if limit is not None:
            max_input_length = min(max_input_length or limit, limit)
            if max_new_tokens >= limit and not getattr(self, "_warned", False):
                self._warned = True
                logger.warning("max_new_tokens=%d: CTranslate2 decodes at most %d tokens with this checkpoint (its "
                               "max_position_embeddings)", max_new_tokens, limit - 1)
            max_new_tokens = min(max_new_tokens, limit - 1)
        ids = self.inputs.source_ids(texts, src_lang, tgt_lang, max_input_length)  # as generate()'s
        source = [self.tokenizer.convert_ids_to_tokens(row) for row in ids]
        # generate()'s max_new_tokens counts the forced language code and the final </s>; CTranslate2's
        # max_decoding_length counts the target prefix (the code) and the end token alike.
        forced = self.inputs.forced_target(tgt_lang)
        prefix = None if forced is None else [[self.tokenizer.convert_ids_to_tokens(forced)]] * len(source)
        results = self.translator.translate_batch(
            source, target_prefix=prefix, beam_size=num_beams, max_decoding_length=max_new_tokens,
            max_input_length=0, return_end_token=False, length_penalty=1.0,
        )
        return self.inputs.decode([self.tokenizer.convert_tokens_to_ids(r.hypotheses[0]) for r in results])


def load_nllb(engine: str, path: str, device: str = "cpu", dtype=torch.float32, compute_type: str = "default",
              threads: int = 0):
    """An NLLB translator with the given engine. `dtype` is for transformers, `compute_type` for CTranslate2."""
    check_engine(engine)
    if engine == "ctranslate2":
        return CTranslate2NLLB(path, device=device, compute_type=compute_type, threads=threads)
    return TransformersNLLB(path, device=device, dtype=dtype)
