"""The systems compared, behind one interface.

    translate(texts, src_lang, tgt_lang) -> list[str]
    respond(texts, src_lang, out_langs, kind) -> {lang: list[str]}   # kind: "math" | "summarize"
    answer_english(questions, src_lang) / answer_in(questions, src_lang, tgt_lang)   # shorthands of respond

`respond` asks for the task's answer in each of `out_langs` ("eng_Latn" = the LLM's English answer); a system
that can produce several languages from one pass (XBridge) does so. What a system cannot do is declared on its
class (`english_only`, `can_respond`), so `check()` refuses an unsupported (system, task) before any model loads.

Baselines take their bases from `--nmt` / `--llm`, or from an XBridge checkpoint given as `--model` (its config
names the NLLB and LLM it was built on, so Translate-Test uses the very NLLB the bridge uses).
"""

import json
import os

import torch

from configuration_xbridge import ENGLISH

from . import languages

# Task instructions for systems that prompt an LLM. XBridge checkpoints are trained with the raw question as the
# prompt (no instruction, train/data.py), so the bridge gets none for math unless the user passes one.
INSTRUCTIONS = {
    "math": "Solve the following math problem step by step. End with \"The answer is N\".",
    "summarize": "Summarize the following article in one or two sentences.",
}


class UnsupportedTask(ValueError):
    """A (system, task) pair that the system cannot run, e.g. encoder-only asked for non-English output."""


def _respond_in(lang: str) -> str:
    return f"Respond in {languages.BY_NLLB[lang].name}."


def read_config(path_or_id: str) -> dict:
    """config.json of a local folder or Hub repo (no model class needed)."""
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(path_or_id)
    return config


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(name: str, device: str):
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


class System:
    name = "system"
    english_only = False  # can write English only (the LLM's output; no decoder)
    can_respond = True  # follows task instructions (math, summaries); False for the NMT model alone
    can_translate = True

    def __init__(self, max_new_tokens: dict | None = None, instruction: str | None = None):
        self.max_new_tokens = {"translate": 128, "math": 256, "summarize": 128, **(max_new_tokens or {})}
        self.instruction = instruction  # overrides INSTRUCTIONS (and XBridge's none) when given

    @classmethod
    def check(cls, kind: str, src_lang: str, out_langs: list[str]) -> None:
        """Raise UnsupportedTask with the reason when this system cannot run the unit."""
        if kind == "translate" and not cls.can_translate:
            raise UnsupportedTask(f"system {cls.name!r} cannot translate")
        if kind != "translate" and not cls.can_respond:
            raise UnsupportedTask(f"system {cls.name!r} only translates; it cannot run {kind!r} tasks "
                                  "(use it on flores or tatoeba)")
        foreign = [lang for lang in out_langs if lang != ENGLISH]
        if cls.english_only and foreign:
            raise UnsupportedTask(f"system {cls.name!r} writes English only (it has no decoder side); "
                                  f"it cannot produce {', '.join(foreign)}")

    def instruction_for(self, kind: str) -> str | None:
        return self.instruction if self.instruction is not None else INSTRUCTIONS.get(kind)

    # The public interface checks the request, then calls the system's own `_translate` / `_respond`.
    def translate(self, texts, src_lang, tgt_lang) -> list[str]:
        self.check("translate", src_lang, [tgt_lang])
        return self._translate(list(texts), src_lang, tgt_lang)

    def respond(self, texts, src_lang, out_langs, kind) -> dict:
        self.check(kind, src_lang, list(out_langs))
        return self._respond(list(texts), src_lang, list(out_langs), kind)

    def answer_english(self, questions, src_lang, kind="math") -> list[str]:
        return self.respond(questions, src_lang, [ENGLISH], kind)[ENGLISH]

    def answer_in(self, questions, src_lang, tgt_lang, kind="math") -> list[str]:
        return self.respond(questions, src_lang, [tgt_lang], kind)[tgt_lang]

    def _translate(self, texts, src_lang, tgt_lang) -> list[str]:
        raise UnsupportedTask(f"system {self.name!r} cannot translate")

    def _respond(self, texts, src_lang, out_langs, kind) -> dict:
        raise UnsupportedTask(f"system {self.name!r} cannot run {kind!r} tasks")


# ---------------------------------------------------------------- building blocks


class NMT:
    """An NLLB (M2M100) model translating batches: forced target language code, greedy by default. `engine`:
    "transformers" (`generate()`) or "ctranslate2" (CTranslate2, `compute_type` float32 / int8 / ...; optional
    dependency), see `nmt_engine.py`."""

    def __init__(self, path, device, dtype, engine="transformers", compute_type="default"):
        from nmt_engine import load_nllb

        self.engine = load_nllb(engine, path, device=device, dtype=dtype, compute_type=compute_type)
        self.tokenizer = self.engine.tokenizer
        self.model = getattr(self.engine, "model", None)  # the transformers model (None with CTranslate2)
        self.device = device

    def translate(self, texts, src_lang, tgt_lang, max_new_tokens) -> list[str]:
        if src_lang == tgt_lang:
            return list(texts)
        return self.engine.translate(list(texts), src_lang, tgt_lang, num_beams=1, max_new_tokens=max_new_tokens)


class LLM:
    """A causal LM answering prompts in batches; the chat template wraps the prompt when the tokenizer has one."""

    def __init__(self, path, device, dtype, adapter: str | None = None, chat: bool = True):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(adapter if adapter and _has_tokenizer(adapter) else path)
        self.tokenizer.padding_side = "left"  # decoder-only generation continues from the right end
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.to(device).eval()
        self.device = device
        self.chat = chat and bool(getattr(self.tokenizer, "chat_template", None))

    def prompt(self, text: str, instruction: str | None) -> str:
        """As the bridge's processor asks: the chat template, else the same fallback template."""
        from processing_xbridge import ALPACA_TEMPLATE, chat_prompt, prompt_query

        if self.chat:
            return chat_prompt(self.tokenizer, text, instruction)
        return ALPACA_TEMPLATE.format(query=prompt_query(text, instruction))

    @torch.no_grad()
    def generate(self, texts, instruction, max_new_tokens) -> list[str]:
        prompts = [self.prompt(t, instruction) for t in texts]
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        ids = self.model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.tokenizer.pad_token_id
        )
        return self.tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def _has_tokenizer(folder: str) -> bool:
    return os.path.isdir(folder) and any(
        os.path.exists(os.path.join(folder, f)) for f in ("tokenizer.json", "tokenizer_config.json")
    )


def _bases(model: str | None, nmt: str | None, llm: str | None, need: tuple[str, ...], system: str) -> dict:
    """Resolve base model paths: explicit --nmt/--llm win, else those an XBridge --model was built on."""
    found = {"nmt": nmt, "llm": llm}
    if model and any(found[k] is None for k in need):
        config = read_config(model)
        if config.get("model_type") == "xbridge":
            from hub_xbridge import resolve_base  # a local base is saved relative to the bridge's folder

            for k in ("nmt", "llm"):
                key = f"{k}_name_or_path"
                if found[k] is None and k in need and config.get(key):
                    found[k] = resolve_base(config[key], model, key)
        elif "llm" in need and found["llm"] is None:
            found["llm"] = model  # a plain LLM
        elif "nmt" in need and found["nmt"] is None:
            found["nmt"] = model  # a plain NLLB model
    missing = [k for k in need if not found[k]]
    if missing:
        flags = " and ".join(f"--{k}" for k in missing)
        raise ValueError(f"system {system!r} needs {flags} (or --model pointing at an XBridge checkpoint)")
    return found


# ---------------------------------------------------------------- XBridge


class XBridgeSystem(System):
    """The full bridge: English from the LLM (`tgt_lang=None`), other languages from the NLLB decoder."""

    name = "xbridge"

    def __init__(self, model, device=None, dtype="auto", **kwargs):
        super().__init__(**kwargs)
        if not model:
            raise ValueError(f"system {self.name!r} needs --model (an XBridge checkpoint folder or Hub id)")
        from modeling_xbridge import XBridgeForConditionalGeneration
        from processing_xbridge import XBridgeProcessor

        self.device = device or default_device()
        self.model = XBridgeForConditionalGeneration.from_pretrained(model, dtype=_dtype(dtype, self.device))
        self.model.to(self.device).eval()
        try:
            self.processor = XBridgeProcessor.from_pretrained(model)
        except (OSError, ValueError, TypeError):  # a checkpoint saved without its processor: rebuild from the bases
            config = self.model.config
            self.processor = XBridgeProcessor.from_bases(config.nmt_name_or_path, config.llm_name_or_path)

    @torch.no_grad()
    def _generate(self, texts, src_lang, out_langs, max_new_tokens, instruction=None, prompt=True) -> dict:
        batch = self.processor(texts, src_lang=src_lang, instruction=instruction, prompt=prompt).to(self.device)
        sequences = self.model.generate(
            **batch, tgt_lang=list(out_langs), max_new_tokens=max_new_tokens, do_sample=False
        )
        # English comes from the LLM's vocabulary, every other language from NLLB's.
        return {
            lang: self.processor.batch_decode(ids, skip_special_tokens=True, from_llm=lang == ENGLISH)
            for lang, ids in sequences.items()
        }

    def _translate(self, texts, src_lang, tgt_lang):
        # Translation is what stage 1 trains, without any prompt: source -> (LLM English) -> decoder.
        out = self._generate(texts, src_lang, [tgt_lang], self.max_new_tokens["translate"], prompt=False)
        return out[tgt_lang]

    def _respond(self, texts, src_lang, out_langs, kind):
        instruction = self.instruction if kind == "math" else self.instruction_for(kind)
        return self._generate(texts, src_lang, out_langs, self.max_new_tokens[kind], instruction=instruction)


class XBridgeEncoderOnlySystem(XBridgeSystem):
    """MindMerger's design: the encoder side only, so English output only."""

    name = "xbridge-encoder-only"
    english_only = True


# ---------------------------------------------------------------- baselines


class DirectSystem(System):
    """The LLM alone, prompted with the question in its own language."""

    name = "direct"
    chat = True  # the base LLM's chat template when it has one

    def __init__(self, model=None, llm=None, device=None, dtype="auto", adapter=None, **kwargs):
        super().__init__(**kwargs)
        self.device = device or default_device()
        path = _bases(model, None, llm, ("llm",), self.name)["llm"]
        self.llm = LLM(path, self.device, _dtype(dtype, self.device), adapter=adapter, chat=self.chat)

    def _translate(self, texts, src_lang, tgt_lang):
        name = languages.BY_NLLB
        instruction = f"Translate the following {name[src_lang].name} text into {name[tgt_lang].name}. " \
                      "Reply with the translation only."
        return self.llm.generate(texts, instruction, self.max_new_tokens["translate"])

    def _respond(self, texts, src_lang, out_langs, kind):
        base = self.instruction_for(kind)
        return {
            lang: self.llm.generate(texts, " ".join(filter(None, (base, _respond_in(lang)))), self.max_new_tokens[kind])
            for lang in out_langs
        }


class SFTSystem(DirectSystem):
    """An LLM fine-tuned on the task data: a merged model, or a LoRA adapter folder over its base (peft).

    Prompted as `python -m train sft` trained it: the plain Alpaca template with the raw question (no instruction
    for math unless --instruction is given), or the LLM's chat template when the adapter's `sft_prompt.json` says
    it was trained with it.
    """

    name = "sft"
    chat = False

    def instruction_for(self, kind):
        return self.instruction if kind == "math" else super().instruction_for(kind)

    def __init__(self, model=None, llm=None, device=None, dtype="auto", **kwargs):
        if not model:
            raise ValueError("system 'sft' needs --model: a fine-tuned LLM or a peft adapter folder")
        prompt_file = os.path.join(model, "sft_prompt.json")  # train.sft.PROMPT_FILE (eval does not import train)
        if os.path.isfile(prompt_file):
            with open(prompt_file, encoding="utf-8") as f:
                self.chat = bool(json.load(f).get("use_chat_template"))
        adapter_config = os.path.join(model, "adapter_config.json")
        if os.path.isfile(adapter_config):
            with open(adapter_config, encoding="utf-8") as f:
                base = llm or json.load(f).get("base_model_name_or_path")
            if not base:
                raise ValueError(f"{adapter_config} names no base model: pass --llm")
            super().__init__(llm=base, device=device, dtype=dtype, adapter=model, **kwargs)
        else:
            super().__init__(llm=llm or model, device=device, dtype=dtype, **kwargs)


class TranslateTestSystem(System):
    """NLLB x->en, the LLM on English, NLLB en->y: the cascade."""

    name = "translate-test"

    def __init__(self, model=None, nmt=None, llm=None, device=None, dtype="auto", engine="transformers",
                 compute_type="default", **kwargs):
        super().__init__(**kwargs)
        self.device = device or default_device()
        paths = _bases(model, nmt, llm, ("nmt", "llm"), self.name)
        dtype = _dtype(dtype, self.device)
        self.nmt = NMT(paths["nmt"], self.device, dtype, engine=engine, compute_type=compute_type)
        self.llm = LLM(paths["llm"], self.device, dtype)

    def _translate(self, texts, src_lang, tgt_lang):
        return self.nmt.translate(texts, src_lang, tgt_lang, self.max_new_tokens["translate"])

    def _respond(self, texts, src_lang, out_langs, kind):
        english_in = self.nmt.translate(texts, src_lang, ENGLISH, self.max_new_tokens["translate"])
        english_out = self.llm.generate(english_in, self.instruction_for(kind), self.max_new_tokens[kind])
        return {lang: self.nmt.translate(english_out, ENGLISH, lang, self.max_new_tokens[kind]) for lang in out_langs}


class NMTSystem(System):
    """The NLLB model alone: the translation ceiling the paper compares with."""

    name = "nmt"
    can_respond = False

    def __init__(self, model=None, nmt=None, device=None, dtype="auto", engine="transformers",
                 compute_type="default", **kwargs):
        super().__init__(**kwargs)
        self.device = device or default_device()
        path = _bases(model, nmt, None, ("nmt",), self.name)["nmt"]
        self.nmt = NMT(path, self.device, _dtype(dtype, self.device), engine=engine, compute_type=compute_type)

    def _translate(self, texts, src_lang, tgt_lang):
        return self.nmt.translate(texts, src_lang, tgt_lang, self.max_new_tokens["translate"])


SYSTEMS = {
    cls.name: cls
    for cls in (XBridgeSystem, XBridgeEncoderOnlySystem, DirectSystem, TranslateTestSystem, SFTSystem, NMTSystem)
}


def system_class(name: str) -> type[System]:
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}; valid systems: {', '.join(SYSTEMS)}")
    return SYSTEMS[name]


# Systems whose NLLB work can run on another engine (they only translate with it).
ENGINE_SYSTEMS = ("translate-test", "nmt")


def load_system(name: str, **options) -> System:
    """Build system `name`; options: model, nmt, llm, device, dtype, max_new_tokens, instruction, and for
    translate-test / nmt: engine ("transformers" or "ctranslate2") and compute_type."""
    from nmt_engine import check_engine

    cls = system_class(name)
    engine = check_engine(options.get("engine") or "transformers")
    if engine != "transformers" and name not in ENGINE_SYSTEMS:
        raise ValueError(f"--engine {engine!r} applies to the systems that only translate with NLLB "
                         f"({', '.join(ENGINE_SYSTEMS)}); system {name!r} runs on transformers")
    accepted = {
        "xbridge": ("model",), "xbridge-encoder-only": ("model",), "direct": ("model", "llm"),
        "sft": ("model", "llm"), "translate-test": ("model", "nmt", "llm", "engine", "compute_type"),
        "nmt": ("model", "nmt", "engine", "compute_type"),
    }[name]
    common = ("device", "dtype", "max_new_tokens", "instruction")
    return cls(**{k: v for k, v in options.items() if k in accepted + common and v is not None})
