"""XBridge on the Hub: building a bridge around its bases, saving and loading it, its model card and its bundle.

Part of the flat Hub bundle (only torch and transformers are imported). `modeling_xbridge.py` holds the model
itself; `XBridgeHubMixin` gives its class `from_bases`, `save_pretrained` and `from_pretrained`, and the functions
here say how a bridge names its bases (`base_reference`, `resolve_base`), checks them (`check_bases_match`), and
which files make the bundle (`BUNDLE_FILES`, `write_bundle`).
"""

import os
import shutil

import torch
from huggingface_hub import ModelCard, ModelCardData
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.utils import cached_file, logging

try:  # relative import for the Hub bundle; plain import when the project root is on sys.path
    from .configuration_xbridge import ENGLISH, XBridgeConfig
    from .languages_xbridge import detect_family, language_control
except ImportError:
    from configuration_xbridge import ENGLISH, XBridgeConfig
    from languages_xbridge import detect_family, language_control

logger = logging.get_logger(__name__)
BRIDGE_WEIGHTS_NAME = "model.safetensors"
HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only")  # where and which revision to load from
# The remote code of a bridge: every checkpoint carries these files, byte for byte the package's own.
BUNDLE_FILES = ("configuration_xbridge.py", "modeling_xbridge.py", "processing_xbridge.py", "hub_xbridge.py",
                "languages_xbridge.py")


def write_bundle(folder: str | os.PathLike) -> list[str]:
    """Copy the bundle (`BUNDLE_FILES`, from the folder this module was loaded from) into `folder`, byte for byte.

    The one place that writes a bridge's remote code: `save_pretrained`, the trainer, the converter and the
    mini-world's publishing all call it, so no checkpoint ships a stale copy. Returns the paths written."""
    source = os.path.dirname(os.path.abspath(__file__))
    missing = [name for name in BUNDLE_FILES if not os.path.isfile(os.path.join(source, name))]
    if missing:
        raise FileNotFoundError(f"the bundle in {source} lacks {missing}: cannot write a complete bundle")
    os.makedirs(folder, exist_ok=True)
    written = []
    for name in BUNDLE_FILES:
        origin, target = os.path.join(source, name), os.path.join(folder, name)
        if os.path.realpath(origin) != os.path.realpath(target):  # a save into the bundle's own folder copies nothing
            shutil.copyfile(origin, target)
        written.append(target)
    return written


BASE_QUANTIZATIONS = ("none", "int8", "nf4")
# The NMT's decoder cross-attention is a bridge weight (it trains in stages 1 and 3): never quantised.
NMT_KEEP_FLOAT = (r".*encoder_attn", r".*EncDecAttention")


def base_quantization(kind: str | None, device_map=None, keep_float=None):
    """A transformers `quantization_config` for a frozen base, or None (`kind` "none"): "int8" is bitsandbytes
    8-bit on a CUDA GPU and torchao's int8 weight-only on CPU (transformers' `TorchAoConfig`; bitsandbytes has no
    CPU kernels for training, and torchao's int8 tensors pass gradients to their inputs, which the encoder-side
    mapping needs); "nf4" is bitsandbytes 4-bit NormalFloat (QLoRA-style, CUDA only). Gradients flow through a
    quantised frozen LLM; `keep_float` names modules (regexes) left unquantised."""
    import importlib

    from transformers import BitsAndBytesConfig, TorchAoConfig

    if kind in (None, "none"):
        return None
    if kind not in BASE_QUANTIZATIONS:
        raise ValueError(f"quantization {kind!r} is not one of {BASE_QUANTIZATIONS}")
    on_cpu = not torch.cuda.is_available() or str(device_map).startswith("cpu")
    skip = list(keep_float or [])
    if kind == "nf4":
        if on_cpu:
            raise ValueError("nf4 (bitsandbytes 4-bit) needs a CUDA GPU; on CPU use 'int8' (torchao weight-only)")
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                                  bnb_4bit_use_double_quant=True, llm_int8_skip_modules=skip or None)
    if not on_cpu:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip or None)
    try:  # an optional dependency (`pip install "xbridge[quant]"`), imported by name to keep the bundle's imports
        config = importlib.import_module("torchao.quantization").Int8WeightOnlyConfig()
    except ImportError as err:
        raise ImportError("int8 bases on CPU need torchao: pip install \"torchao>=0.13\" (or xbridge[quant])") from err
    return TorchAoConfig(config, modules_to_not_convert=skip or None)


def _quantized(quantization_config) -> dict:
    return {} if quantization_config is None else {"quantization_config": quantization_config}


class XBridgeHubMixin:
    """Building, saving and loading for `XBridgeForConditionalGeneration`: listed first among its bases, so these
    override `PreTrainedModel`'s, which they call through `super()`."""

    @classmethod
    def from_bases(cls, nmt_name_or_path, llm_name_or_path, dtype=None, device_map=None, lang_code_to_id=None,
                   llm_quantization="none", nmt_quantization="none", **config_overrides):
        """A new bridge from two pretrained checkpoints (Hub ids or folders), bridge weights freshly initialised.

        The NMT is any seq2seq checkpoint `AutoModelForSeq2SeqLM` loads: NLLB, M2M100, mBART-50, T5 (MADLAD-400),
        Marian (multi-target with `>>por<<` tags, or bilingual with `nmt_source_lang=` / `nmt_target_lang=` naming
        its implied languages; `trust_remote_code=True` for one that brings its own code). `nmt_family=` overrides
        the family its tokenizer tells (`languages_xbridge.FAMILIES`); `lang_code_to_id` defaults to every language
        the NMT's tokenizer has a tag for, by NLLB code (none for a bilingual NMT). `llm_quantization` /
        `nmt_quantization` ("none", "int8", "nf4": `base_quantization`) load a frozen base quantised; the bridge
        stays in float and references the bases as usual, so a bridge trained on int8 bases loads on float ones.
        """
        base_kwargs = {k: config_overrides.pop(k) for k in HUB_KWARGS + ("trust_remote_code",) if k in config_overrides}
        nmt = AutoModelForSeq2SeqLM.from_pretrained(
            nmt_name_or_path, dtype=dtype, device_map=device_map, **base_kwargs,
            **_quantized(base_quantization(nmt_quantization, device_map, NMT_KEEP_FLOAT)))
        llm = AutoModelForCausalLM.from_pretrained(
            llm_name_or_path, dtype=dtype, device_map=device_map, **base_kwargs,
            **_quantized(base_quantization(llm_quantization, device_map)))
        family = config_overrides.pop("nmt_family", None)
        if config_overrides.get("nmt_target_lang") is not None:
            lang_code_to_id = lang_code_to_id or {}  # bilingual: no language tokens to look up
        if lang_code_to_id is None:
            # The tokenizer tells the family (NLLB and M2M100 share an architecture) and holds its tags.
            try:
                tokenizer = AutoTokenizer.from_pretrained(nmt_name_or_path, **base_kwargs)
            except (OSError, ValueError) as err:  # weights without a tokenizer: pass lang_code_to_id= yourself
                logger.warning(f"no tokenizer loads from {nmt_name_or_path} ({err}): the bridge knows no language tags")
                tokenizer = None
            family = family or detect_family(tokenizer, nmt.config.model_type)
            lang_code_to_id = language_control(family).lang_codes(tokenizer) if tokenizer is not None else {}
        base_kwargs.pop("trust_remote_code", None)
        config = XBridgeConfig(
            nmt_config=nmt.config,
            llm_config=llm.config,
            nmt_name_or_path=nmt_name_or_path,
            llm_name_or_path=llm_name_or_path,
            lang_code_to_id=lang_code_to_id,
            nmt_family=family or detect_family(None, nmt.config.model_type),
            **config_overrides,
        )
        return cls._around_bases(config, nmt, llm)

    @classmethod
    def _around_bases(cls, config, nmt, llm):
        # The composite config holds copies of the base configs; give the live models those copies back with
        # the attention backend they were actually loaded with, so both stay on the same backend.
        for key, live in (("nmt_config", nmt), ("llm_config", llm)):
            copy = getattr(config, key)
            if type(copy) is not type(live.config):  # a remote-code base's config, read before its class was loaded
                copy = type(live.config).from_dict(copy.to_dict())
                setattr(config, key, copy)
            copy._attn_implementation = live.config._attn_implementation
            live.config = copy
        model = cls(config, nmt=nmt, llm=llm)
        bridge_device = llm.get_input_embeddings().weight.device
        model.enc_map.to(bridge_device)
        model.boundary.data = model.boundary.data.to(bridge_device)
        model.dec_map.to(nmt.get_output_embeddings().weight.device)
        return model

    def save_pretrained(self, save_directory, bridge_only: bool | None = None, **kwargs):
        """Bridge-only by default (mapping layers, boundary, decoder cross-attention: megabytes, not the bases)."""
        bridge_only = self.config.bridge_only if bridge_only is None else bridge_only
        if bridge_only and not (self.config.nmt_name_or_path and self.config.llm_name_or_path):
            raise ValueError("a bridge-only checkpoint needs config.nmt_name_or_path and config.llm_name_or_path; "
                             "build the model with from_bases(...) or save with bridge_only=False")
        previous = self.config.bridge_only, self.config.nmt_name_or_path, self.config.llm_name_or_path
        self.config.bridge_only = bridge_only
        # Local bases are written relative to the bridge's folder, so the bridge finds them wherever the tree moves
        # and from any working directory; Hub ids are written as they are.
        self.config.nmt_name_or_path = base_reference(self.config.nmt_name_or_path, save_directory)
        self.config.llm_name_or_path = base_reference(self.config.llm_name_or_path, save_directory)
        if bridge_only:
            state = kwargs.pop("state_dict", None) or self.state_dict()
            # The "same language?" head only serves the stage-1 loss: once that loss is off, it is not part of the bridge.
            drop_lang_head = self.config.lambda_lang == 0
            kwargs["state_dict"] = {
                k: v for k, v in state.items()
                if self.is_bridge_parameter(k) and not (drop_lang_head and k.startswith("lang_head."))
            }
        try:
            super().save_pretrained(save_directory, **kwargs)  # copies the model file and its relative imports
            if kwargs.get("is_main_process", True):
                write_bundle(save_directory)  # every bundle file, whatever transformers found to copy
                write_model_card(self, save_directory)
        finally:
            self.config.bridge_only, self.config.nmt_name_or_path, self.config.llm_name_or_path = previous

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Bridge-only checkpoints load the bases by name first, then the bridge; full ones load as usual."""
        config = kwargs.pop("config", None)
        quantization = {k: kwargs.pop(k, "none") for k in ("nmt_quantization", "llm_quantization")}
        hub_kwargs = {k: kwargs[k] for k in HUB_KWARGS + ("subfolder",) if k in kwargs}
        if not isinstance(config, XBridgeConfig):
            # AutoModel with remote code may hand in the config as an instance of another copy of this class (the
            # config's and the model's dynamic modules can be two copies), with the caller's overrides applied:
            # taken over, not read again from the checkpoint (which would drop e.g. nmt_name_or_path=...)
            if getattr(config, "model_type", None) == XBridgeConfig.model_type:
                config = XBridgeConfig.from_dict(config.to_dict())
            else:
                config = XBridgeConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        if not config.bridge_only:
            if set(quantization.values()) != {"none"}:
                raise ValueError(f"{quantization}: quantised bases load with a bridge-only checkpoint (this one holds "
                                 "the bases' weights); save it with bridge_only=True")
            return super().from_pretrained(pretrained_model_name_or_path, *args, config=config, **kwargs)
        base_kwargs = {k: v for k, v in hub_kwargs.items() if k not in ("subfolder", "revision")}  # revision: the bridge's
        base_kwargs.update({k: kwargs[k] for k in ("device_map", "attn_implementation", "trust_remote_code") if k in kwargs})
        base_kwargs["dtype"] = kwargs.get("dtype", kwargs.get("torch_dtype"))
        for key in ("nmt_name_or_path", "llm_name_or_path"):  # an explicit base wins over the saved reference
            name = kwargs.pop(key, None) or resolve_base(getattr(config, key), pretrained_model_name_or_path, key)
            setattr(config, key, name)
        device_map = base_kwargs.get("device_map")
        nmt = AutoModelForSeq2SeqLM.from_pretrained(config.nmt_name_or_path, **base_kwargs, **_quantized(
            base_quantization(quantization["nmt_quantization"], device_map, NMT_KEEP_FLOAT)))
        llm = AutoModelForCausalLM.from_pretrained(config.llm_name_or_path, **base_kwargs, **_quantized(
            base_quantization(quantization["llm_quantization"], device_map)))
        check_bases_match(config, nmt.config, llm.config)
        model = cls._around_bases(config, nmt, llm)
        weights = cached_file(pretrained_model_name_or_path, BRIDGE_WEIGHTS_NAME, **hub_kwargs)
        from safetensors.torch import load_file  # safetensors is a dependency of transformers

        state = load_file(weights)
        if model.lang_head is None:  # a training-only head saved by an older checkpoint; unused here
            state = {k: v for k, v in state.items() if not k.startswith("lang_head.")}
        unknown = [k for k in state if not model.is_bridge_parameter(k)]
        missing = [k for k, _ in model.named_parameters() if model.is_bridge_parameter(k) and k not in state]
        if unknown or missing:
            raise ValueError(f"bridge checkpoint {pretrained_model_name_or_path!r} does not fit this model: "
                             f"unexpected {unknown[:5]}, missing {missing[:5]}")
        model.keep_cross_attention_fp32()  # trained weights are not rounded to the bases' dtype
        own = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in state.items():
                own[name].copy_(tensor.to(own[name].dtype))
        model.eval()
        return model


def base_reference(name_or_path, save_directory):
    """How a bridge saved in `save_directory` refers to a base. A local folder beside the bridge (a sibling, as in
    `bridge/`, `nmt/`, `llm/`) is written relative to it (`../nmt`), so the three move together; a local folder
    elsewhere as an absolute path (a copy of the bridge, e.g. a pushed revision, still finds it); a Hub id as it is."""
    if name_or_path is None or not os.path.isdir(name_or_path):
        return name_or_path
    absolute = os.path.abspath(name_or_path)
    relative = os.path.relpath(absolute, os.path.abspath(save_directory))
    if relative.startswith(os.path.join("..", "..")):
        return absolute
    return relative if relative.startswith("..") else os.path.join(".", relative)


def resolve_base(name, bridge, key):
    """Where the base `name` saved in the bridge `bridge` lives: a path is read relative to the bridge's own
    folder (never the current directory), an absolute path as it is, anything else is a Hub id."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name is None:
        raise ValueError(f"bridge {bridge!r} names no base in config.{key}: pass {key}=... to from_pretrained")
    tried = []
    if os.path.isabs(name):
        tried.append(name)
    elif os.path.isdir(str(bridge)):
        tried.append(os.path.normpath(os.path.join(str(bridge), name)))
    for path in tried:
        if os.path.isdir(path):
            return path
    is_path = os.path.isabs(name) or name.startswith(".") or name.count("/") > 1 or os.sep in name.replace("/", "")
    if not is_path:
        try:
            validate_repo_id(name)
            return name  # a Hub id: from_pretrained resolves it (cache, offline mode, revision) as usual
        except HFValidationError:
            pass
    raise OSError(
        f"the base {key}={name!r} of bridge {str(bridge)!r} was not found (tried {tried or [name]}); a local base is "
        f"looked up relative to the bridge's folder. Move the base there, or pass {key}='<folder or Hub id>' to "
        f"from_pretrained (and save again to store it)"
    )



def check_bases_match(config, nmt_config, llm_config):
    """A bridge only fits the bases it was trained on: compare the shapes that the bridge weights depend on."""
    pairs = [
        ("NMT d_model", config.nmt_config.d_model, nmt_config.d_model, config.nmt_name_or_path),
        ("NMT vocab_size", config.nmt_config.vocab_size, nmt_config.vocab_size, config.nmt_name_or_path),
        ("LLM hidden_size", config.llm_config.hidden_size, llm_config.hidden_size, config.llm_name_or_path),
        ("LLM vocab_size", config.llm_config.vocab_size, llm_config.vocab_size, config.llm_name_or_path),
        ("LLM num_hidden_layers", config.llm_config.num_hidden_layers, llm_config.num_hidden_layers, config.llm_name_or_path),
    ]
    for what, expected, found, name in pairs:
        if expected != found:
            raise ValueError(f"the bridge was built for a base with {what}={expected}, but {name!r} has {what}={found}")


def card_text(title: str, metadata: dict, body: list[str]) -> str:
    """A model card: the Hub's metadata block written by huggingface_hub (`ModelCardData`, so its keys and YAML are
    the Hub's own), then `# title` and the markdown lines of `body`. The one card writer of the project."""
    return str(ModelCard(f"---\n{ModelCardData(**metadata).to_yaml()}\n---\n\n# {title}\n\n" + "\n".join(body) + "\n"))


def bridge_card(config, n_bridge: int, info: dict) -> str:
    """The card of a bridge: bases, languages, stage, `n_bridge` trained parameters, and from `info` (all optional)
    `training_data`, `metrics` ({name: value}), `notes` (markdown lines), `usage` (the code shown), `title`,
    `license`, `tags` and `base_model` (Hub ids; default: the config's base names)."""
    langs = sorted(config.lang_code_to_id)
    body = [
        f"Composes the translation model `{config.nmt_name_or_path}` with the LLM `{config.llm_name_or_path}` through "
        f"small trained mapping layers ({n_bridge / 1e6:.2f}M parameters). The bases stay frozen and are loaded by name.",
        "",
        f"- training stage: {config.stage or 'untrained'}",
        f"- languages ({len(langs)}): {', '.join(langs[:40])}{' ...' if len(langs) > 40 else ''}",
        f"- checkpoint: {'bridge only' if config.bridge_only else 'full (bases included)'}",
    ]
    if info.get("training_data"):
        body.append(f"- training data: {info['training_data']}")
    body += info.get("notes", [])
    if info.get("metrics"):
        body += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
        body += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in info["metrics"].items()]
    example_lang = next((code for code in langs if code != ENGLISH), ENGLISH)
    usage = info.get("usage") or "\n".join([
        "from transformers import AutoModel, AutoProcessor",
        "",
        'repo = "<this repo>"',
        "model = AutoModel.from_pretrained(repo, trust_remote_code=True)",
        "processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True)"])
    body += ["", "## Usage", "", "```python", usage,
             f'batch = processor(["..."], src_lang="{example_lang}", return_tensors="pt")',
             f'ids = model.generate(**batch, tgt_lang="{example_lang}", max_new_tokens=128)',
             "print(processor.batch_decode(ids, skip_special_tokens=True))", "```"]
    metadata = dict(library_name="transformers", pipeline_tag="text-generation",
                    tags=["xbridge", "multilingual", "nllb", "custom_code", *info.get("tags", [])])
    for key, value in (("base_model", info.get("base_model", [config.nmt_name_or_path, config.llm_name_or_path])),
                       ("license", info.get("license"))):
        if value:  # the Hub's field is left out rather than written empty (`base_model`: Hub ids, not folders)
            metadata[key] = value
    return card_text(info.get("title", "XBridge bridge"), metadata, body)


def write_model_card(model, save_directory) -> None:
    """README.md for the Hub (`bridge_card`; `model.card_info`, set by the trainer, adds data and metrics)."""
    n_bridge = sum(p.numel() for n, p in model.named_parameters() if model.is_bridge_parameter(n))
    text = bridge_card(model.config, n_bridge, getattr(model, "card_info", None) or {})
    with open(os.path.join(save_directory, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)
