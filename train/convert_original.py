"""Convert a checkpoint in the XBridge authors' layout (`ICTNLP/XBridge-base`, `ICTNLP/XBridge-SFT`) into a
bridge-only checkpoint of this package, checked, with processor, remote code and model card.

    python -m train.convert_original ICTNLP/XBridge-SFT \\
        --nmt facebook/nllb-200-distilled-1.3B --llm meta-llama/Meta-Llama-3-8B --out xbridge-sft

The original is one checkpoint holding every weight in fp32 (~38 GB at NLLB-1.3B x 8B): `model_mt.*` (the NLLB
model; its decoder cross-attention is trained), `model_llm.*` (the LLM), `mapping_enc2llm.*` and
`mapping_llm2dec.*` (mapping blocks `input_layernorm -> linear1 -> SiLU -> linear2`, plus the learned
`end_boundary`), with a `config.json` that names the bases by paths on the authors' machine. The output holds
only the bridge (~1 GB) and names the bases by Hub id. Shards are read one tensor at a time (`safe_open`): the
bases inside the original are never loaded, only a sample of their rows is compared with the named bases.
"""

import argparse
import json
import math
import os
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the flat Hub bundle imports as top-level modules from a checkout
    sys.path.insert(0, str(ROOT))

from configuration_xbridge import XBridgeConfig, nllb_lang_codes  # noqa: E402
from hub_xbridge import write_bundle  # noqa: E402
from modeling_xbridge import XBridgeForConditionalGeneration  # noqa: E402
from processing_xbridge import XBridgeProcessor  # noqa: E402

# The release's math prompt: Alpaca layout, the raw question as the instruction, the response primed.
RELEASE_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{query}\n\n### Response: Let's think step by step."
)
RELEASE_LLM_LAYER = -2  # the release reads the LLM's penultimate layer; its config does not record it
BLOCK_PARTS = {  # original mapping-block names -> this package's MappingBlock names
    "input_layernorm.weight": "norm.weight",
    "linear1.weight": "up.weight", "linear1.bias": "up.bias",
    "linear2.weight": "down.weight", "linear2.bias": "down.bias",
}
UNUSED_KEYS = {"mapping_llm2dec.end_boundary"}  # saved by the release, never read by its forward
# Buffers that older transformers versions saved and the current models recompute.
RECOMPUTED_SUFFIXES = ("rotary_emb.inv_freq", "embed_positions.weights", "embed_positions._float_tensor")
CHECK_ROWS = 16  # rows read from each sampled base tensor: enough to tell two models apart, cheap at any size
CHECK_TOLERANCE = 1e-2  # relative max difference; fp32 -> bf16 rounding is <= 4e-3, two different models ~1
WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin")


class ConversionError(ValueError):
    """A checkpoint that cannot be converted as asked; the message names the bad value and the fix."""


def package_name(key: str) -> str | None:
    """This package's parameter name for an original key (None: no counterpart)."""
    if key.startswith("model_mt."):
        return "nmt." + key[len("model_mt."):]
    if key.startswith("model_llm."):
        return "llm." + key[len("model_llm."):]
    if key == "mapping_enc2llm.end_boundary":
        return "boundary"
    for side, target in (("mapping_enc2llm.layers.", "enc_map"), ("mapping_llm2dec.layers.", "dec_map")):
        if key.startswith(side):
            index, _, part = key[len(side):].partition(".")
            if part not in BLOCK_PARTS:
                return None
            if target == "enc_map":  # one block in the release, a plain MappingBlock here
                return f"enc_map.{BLOCK_PARTS[part]}" if index == "0" else None
            return f"dec_map.{index}.{BLOCK_PARTS[part]}"
    return None


def original_name(name: str) -> str:
    """The original key of a package parameter name (for messages about missing keys)."""
    for ours, theirs in (("nmt.", "model_mt."), ("llm.", "model_llm.")):
        if name.startswith(ours):
            return theirs + name[len(ours):]
    if name == "boundary":
        return "mapping_enc2llm.end_boundary"
    reverse = {v: k for k, v in BLOCK_PARTS.items()}
    if name.startswith("enc_map."):
        return "mapping_enc2llm.layers.0." + reverse[name[len("enc_map."):]]
    index, _, part = name[len("dec_map."):].partition(".")
    return f"mapping_llm2dec.layers.{index}.{reverse[part]}"


def _listing(names, limit=8) -> str:
    names = sorted(names)
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# ---------------------------------------------------------------- reading the original
class Original:
    """The original checkpoint: its config, where each tensor lives, and reads that open one file at a time."""

    def __init__(self, source: str, revision: str | None = None, cache_dir: str | None = None, allow_pickle: bool = False):
        self.source, self.revision = source, revision
        if os.path.isdir(source):
            self.folder = Path(source)
        else:
            self.folder = self._download(source, revision, cache_dir, allow_pickle)
            self.revision = self.folder.name  # snapshots/<commit>: the exact commit converted
        config_path = self.folder / "config.json"
        if not config_path.is_file():
            raise ConversionError(f"{source!r} has no config.json: not a checkpoint folder")
        self.config = json.loads(config_path.read_text(encoding="utf-8"))
        missing = [k for k in ("mt_path", "llm_path") if k not in self.config]
        if missing:
            raise ConversionError(
                f"{source!r} is not in the original XBridge layout: its config.json has no {missing} "
                f"(model_type={self.config.get('model_type')!r}); a bridge saved by this package loads directly "
                f"with XBridgeForConditionalGeneration.from_pretrained"
            )
        self.weight_map, self.pickled = self._weight_map(allow_pickle)
        self.shapes = {}
        for filename, keys in self.files().items():
            with self._open(filename) as tensors:
                self.shapes.update({k: tuple(tensors.shape(k)) for k in keys})
        self.total_bytes = sum((self.folder / f).stat().st_size for f in self.files())

    @staticmethod
    def _download(repo_id, revision, cache_dir, allow_pickle) -> Path:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError

        patterns = ["config.json", "*.safetensors", "model.safetensors.index.json"]
        if allow_pickle:
            patterns += ["pytorch_model*.bin", "pytorch_model.bin.index.json"]
        try:
            return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=patterns))
        except HFValidationError as e:
            raise ConversionError(f"{repo_id!r} is neither a local folder nor a valid Hub id ({e})") from e
        except OSError as e:  # not found, gated, offline and not cached, no network
            raise ConversionError(
                f"cannot fetch {repo_id!r} (revision {revision or 'main'}) from the Hub: {str(e).splitlines()[0]}. "
                f"Give a folder or a Hub id that exists; offline (HF_HUB_OFFLINE=1) it must be in the cache"
            ) from e

    def _weight_map(self, allow_pickle):
        present = [f for f in WEIGHT_FILES if (self.folder / f).is_file()]
        if not present:
            raise ConversionError(f"{self.source!r} holds no weights: looked for {', '.join(WEIGHT_FILES)}"
                                  + ("" if allow_pickle else " (pickle .bin files are fetched only with --allow_pickle)"))
        first = present[0]
        pickled = first.startswith("pytorch_model")
        if pickled and not allow_pickle:
            raise ConversionError(
                f"{self.source!r} has only pickle weights ({first}); unpickling can run code. Convert them to "
                f"safetensors, or pass --allow_pickle to read them with torch.load(weights_only=True)"
            )
        if first.endswith(".index.json"):
            return json.loads((self.folder / first).read_text(encoding="utf-8"))["weight_map"], pickled
        with self._open(first, pickled) as tensors:
            return {k: first for k in tensors.keys()}, pickled

    def files(self) -> dict:
        by_file = {}
        for key, filename in self.weight_map.items():
            by_file.setdefault(filename, []).append(key)
        return by_file

    def _open(self, filename, pickled=None):
        return _Tensors(self.folder / filename, self.pickled if pickled is None else pickled)

    def read(self, keys, rows: int | None = None) -> dict:
        """{key: tensor}, one file open at a time; `rows`: only the first rows of each tensor."""
        wanted = set(keys)
        out = {}
        for filename, file_keys in self.files().items():
            here = [k for k in file_keys if k in wanted]
            if here:
                with self._open(filename) as tensors:
                    out.update({k: tensors.get(k, rows) for k in here})
        return out


class _Tensors:
    """One weights file: safetensors through safe_open (header + the tensors asked for), or a pickle memory-mapped."""

    def __init__(self, path: Path, pickled: bool):
        self.path, self.pickled = path, pickled

    def __enter__(self):
        if self.pickled:
            self.handle = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
        else:
            from safetensors import safe_open

            self.handle = safe_open(str(self.path), framework="pt")
        return self

    def __exit__(self, *exc):
        self.handle = None

    def keys(self):
        return list(self.handle.keys())

    def shape(self, key):
        return self.handle[key].shape if self.pickled else self.handle.get_slice(key).get_shape()

    def get(self, key, rows=None):
        if self.pickled:
            tensor = self.handle[key]
            return (tensor if rows is None else tensor[:rows]).clone()
        if rows is None:
            return self.handle.get_tensor(key)
        piece = self.handle.get_slice(key)
        return piece[:rows] if piece.get_shape() else piece[:]


# ---------------------------------------------------------------- the bases
def base_config(name: str, flag: str, expect: str | None = None):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise ConversionError(
            f"cannot load the config of {flag} {name!r}: {str(e).splitlines()[0]}. Give a Hub id that exists "
            f"(offline, HF_HUB_OFFLINE=1: one in the cache) or a local folder"
        ) from e
    if expect and config.model_type != expect:
        raise ConversionError(f"{flag} {name!r} is a {config.model_type!r} model; the NLLB base must be {expect!r}")
    return config


def base_file_reader(name: str):
    """(key -> first rows) over the base's own safetensors files, or None when it has none (checked after loading)."""
    from transformers.utils import cached_file

    def fetch(filename):
        try:
            return cached_file(name, filename, _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False)
        except OSError:
            return None

    index = fetch("model.safetensors.index.json")
    if index:
        weight_map = json.loads(Path(index).read_text(encoding="utf-8"))["weight_map"]
    else:
        single = fetch("model.safetensors")
        if not single:
            return None
        weight_map = None
    from safetensors import safe_open

    def read(aliases, rows):
        for alias in aliases:
            filename = "model.safetensors" if weight_map is None else weight_map.get(alias)
            if filename is None:
                continue
            path = fetch(filename)
            with safe_open(path, framework="pt") as f:
                if alias in f.keys():
                    piece = f.get_slice(alias)
                    return piece[:rows] if piece.get_shape() else piece[:]
        return None

    return read


def relative_difference(original: torch.Tensor, base: torch.Tensor) -> float:
    """Max |a - b| / max |b|, both rounded to the lower of their precisions first (a bf16 copy of the base is fine)."""
    low = base.dtype if torch.finfo(base.dtype).bits < torch.finfo(original.dtype).bits else original.dtype
    a, b = original.to(low).float(), base.to(low).float()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


# ---------------------------------------------------------------- conversion
def infer_stage(config: dict) -> int:
    """The last stage from the freeze flags: 1 trains both sides, 2 only the encoder side, 3 only the decoder side."""
    enc = not config.get("freeze_mapping_enc2llm", False)
    dec = not config.get("freeze_mapping_llm2dec", False)
    return 1 if enc and dec else 2 if enc else 3 if dec else 0


def bridge_config(original: Original, nmt: str, llm: str, stage: int | None) -> XBridgeConfig:
    cfg, shapes = original.config, original.shapes
    for field, allowed in (("hidden_act", "silu"), ("rms_norm_eps", 1e-6)):
        if field in cfg and cfg[field] != allowed:
            raise ConversionError(f"config.json has {field}={cfg[field]!r}; this package's mapping blocks use {allowed!r}")
    for flag, path, name in (("--nmt", cfg["mt_path"], nmt), ("--llm", cfg["llm_path"], llm)):
        trained, named = os.path.basename(str(path).rstrip("/")), os.path.basename(name.rstrip("/"))
        if trained.lower() != named.lower():
            print(f"note: the checkpoint was trained with {path!r}; {flag} names {name!r} (the sampled base tensors decide)")
    try:
        enc_mid = shapes["mapping_enc2llm.layers.0.linear1.weight"][0]
        dec_mid = shapes["mapping_llm2dec.layers.0.linear1.weight"][0]
    except KeyError as e:
        raise ConversionError(f"the checkpoint has no {e.args[0]!r}: the mapping sizes cannot be read") from e
    nmt_config, llm_config = base_config(nmt, "--nmt", expect="m2m_100"), base_config(llm, "--llm")
    # The release's special-token ids win over the bases' where they differ: they shaped every input it trained on.
    for sub, pairs in ((nmt_config, (("pad_token_id", "mt_pad_token_id"), ("eos_token_id", "mt_eos_token_id"))),
                       (llm_config, (("bos_token_id", "llm_bos_token_id"), ("eos_token_id", "llm_eos_token_id"),
                                     ("pad_token_id", "llm_pad_token_id")))):
        for ours, theirs in pairs:
            if cfg.get(theirs) is not None and getattr(sub, ours, None) != cfg[theirs]:
                if getattr(sub, ours, None) is not None:
                    warnings.warn(f"{theirs}={cfg[theirs]} in the checkpoint, {ours}={getattr(sub, ours)} in the base: "
                                  f"using the checkpoint's", stacklevel=2)
                setattr(sub, ours, cfg[theirs])
    if cfg.get("mt_vocab_size") not in (None, nmt_config.vocab_size):
        raise ConversionError(f"the checkpoint's mt_vocab_size={cfg['mt_vocab_size']} but --nmt {nmt!r} has "
                              f"vocab_size={nmt_config.vocab_size}: name the NLLB model it was trained with")
    return XBridgeConfig(
        nmt_config=nmt_config, llm_config=llm_config, nmt_name_or_path=nmt, llm_name_or_path=llm,
        enc_map_hidden_size=enc_mid, dec_map_hidden_size=dec_mid, llm_layer=RELEASE_LLM_LAYER,
        lambda_llm=1.0, lambda_dec=cfg.get("dec_lambda", 0.2), lambda_ot=cfg.get("ot_lambda", 1.0),  # code defaults
        lang_code_to_id=nllb_lang_codes(nmt), stage=infer_stage(cfg) if stage is None else stage,
    )


def tied_names(model) -> dict:
    """name -> every name of the same tensor (the NLLB embeddings and lm_head are one tensor under four names)."""
    groups = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return {name: group for group in groups.values() for name in group}


def check_keys(original: Original, model) -> dict:
    """original key -> package name for every tensor to use; a ConversionError naming unknown, missing, misshapen keys."""
    params = model.state_dict(keep_vars=True)
    names, unknown, shapes = {}, [], []
    for key, shape in original.shapes.items():
        if key in UNUSED_KEYS or key.endswith(RECOMPUTED_SUFFIXES):
            continue
        name = package_name(key)
        if name not in params:
            unknown.append(key)
            continue
        names[key] = name
        expected = tuple(params[name].shape)
        if shape != expected and not (name == "boundary" and math.prod(shape) == math.prod(expected)):
            shapes.append(f"{key}: {shape} in the checkpoint, {expected} expected")
    found = set(names.values())
    groups = {tuple(group) for group in tied_names(model).values()}  # tied names: any one of them is enough
    missing = [original_name(group[0]) for group in groups if not found.intersection(group)]
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown key(s), not part of the XBridge layout: {_listing(unknown)}")
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if shapes:
        problems.append(f"{len(shapes)} tensor(s) of the wrong shape for --nmt {model.config.nmt_name_or_path!r} / "
                        f"--llm {model.config.llm_name_or_path!r} (do they name the bases it was trained with?): "
                        + "; ".join(shapes[:8]))
    if problems:
        raise ConversionError(f"{original.source!r} does not fit the XBridge layout: " + ". ".join(problems))
    return names


def sample_base_keys(names: dict, model, per_base: int) -> list[str]:
    """Base (non-bridge) keys spread evenly over each base's tensors, in checkpoint order."""
    picked = []
    for prefix in ("nmt.", "llm."):
        keys = [k for k, n in names.items() if n.startswith(prefix) and not model.is_bridge_parameter(n)]
        step = max(len(keys) / max(per_base, 1), 1)
        picked += sorted({keys[int(i * step)] for i in range(min(per_base, len(keys)))}, key=keys.index)
    return picked


def compare_bases(original: Original, keys, names, read_base, allow_mismatch: bool) -> list[str]:
    """Compare the first rows of sampled base tensors with the named bases; returns what was compared."""
    report, mismatched = [], []
    theirs = original.read(keys, rows=CHECK_ROWS)
    for key in keys:
        base = read_base(key, names[key])
        if base is None:
            report.append(f"{key}: not in the base's files, not compared")
            continue
        diff = relative_difference(theirs[key], base)
        report.append(f"{key}: relative difference {diff:.2e}")
        if diff > CHECK_TOLERANCE:
            mismatched.append((key, diff))
    if mismatched:
        flag_of = {"nmt": "--nmt", "llm": "--llm"}
        lines = [f"{key} differs from {flag_of[names[key].split('.')[0]]}'s {names[key].split('.', 1)[1]} "
                 f"(relative difference {diff:.3g} > {CHECK_TOLERANCE})" for key, diff in mismatched]
        message = ("the bases inside the checkpoint are not the named ones: " + "; ".join(lines) +
                   ". Name the bases it was trained with (the release: --nmt facebook/nllb-200-distilled-1.3B, "
                   "not nllb-200-1.3B; --llm meta-llama/Meta-Llama-3-8B)")
        if not allow_mismatch:
            raise ConversionError(message + ", or pass --allow_base_mismatch to convert anyway")
        warnings.warn(message + "; converting anyway (--allow_base_mismatch)", stacklevel=2)
    return report


def model_card_section(original: Original, report: list[str], stage: int, stage_inferred: bool, verified_in: str | None) -> str:
    cfg = original.config
    where = (" (a local folder)" if os.path.isdir(original.source) else
             f" at revision `{original.revision}` (https://huggingface.co/{original.source}/tree/{original.revision})")
    lines = [
        "",
        "## Provenance",
        "",
        f"Converted with `python -m train.convert_original` (XBridge package) from `{original.source}`{where}.",
        f"The original holds every weight in fp32 ({original.total_bytes / 1e9:.2f} GB); this checkpoint holds only the "
        "bridge: the encoder-side mapping and boundary, the two decoder-side blocks, and the NLLB decoder cross-attention.",
        "",
        f"- trained with: `{cfg['mt_path']}`, `{cfg['llm_path']}` (paths on the authors' machine)",
        f"- losses: dec_lambda {cfg.get('dec_lambda')}, ot_lambda {cfg.get('ot_lambda')}; "
        f"stage {stage}, {'inferred from the freeze_* flags' if stage_inferred else 'given with --stage'}",
        f"- the release generated up to `max_gen_len` = {cfg.get('max_gen_len')} new tokens, greedy, in fp32: pass "
        f"`max_new_tokens={cfg.get('max_gen_len') or 256}`, and `dtype=torch.float32` to match it exactly"
        + (f" (the converter ran it in {verified_in} after converting)" if verified_in else " (not run after converting)"),
        "- prompt: the release's Alpaca math template with the raw question, saved with the processor"
        + ("; stage 1 trained without a prompt: call the processor with `prompt=False`" if stage == 1 else ""),
        "",
        "Base tensors compared with the named bases (first rows of a sample):",
        "",
        *[f"- {line}" for line in report],
        "",
    ]
    return "\n".join(lines)


def directory_bytes(folder) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def verify(out: Path, original: Original, sample_keys, names, dtype: str, text: str, lang: str, new_tokens: int,
           compare_loaded: bool, allow_mismatch: bool) -> list[str]:
    """Load the converted output the way users will, run one forward and one short greedy generation, print them."""
    torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
    model = XBridgeForConditionalGeneration.from_pretrained(out, dtype=torch_dtype).eval()
    processor = XBridgeProcessor.from_pretrained(out)
    report = []
    if compare_loaded:  # the bases had no safetensors files to sample: compare with the loaded weights instead
        own = model.state_dict()
        report = compare_bases(original, sample_keys, names, lambda key, name: own[name][:CHECK_ROWS], allow_mismatch)
    batch = processor([text], src_lang=lang, answers=["7"], targets=["7"], tgt_lang=lang)
    with torch.no_grad():
        out_forward = model(**batch)
    print(f"forward: loss {out_forward.loss.item():.4f} (llm {out_forward.loss_llm.item():.4f}, "
          f"dec {out_forward.loss_dec.item():.4f}); llm_logits[0, 0, :4] = {out_forward.llm_logits[0, 0, :4].tolist()}")
    prompt_only = {k: v for k, v in batch.items() if k in processor.model_input_names}
    generated = model.generate(**prompt_only, tgt_lang=[lang], max_new_tokens=new_tokens, do_sample=False,
                               return_dict_in_generate=True)
    print(f"greedy English ({new_tokens} tokens): {processor.batch_decode(generated.llm_sequences, from_llm=True)[0]!r}")
    print(f"greedy {lang}: {processor.batch_decode(generated.sequences[lang])[0]!r}")
    if not all(torch.isfinite(t).all() for t in (out_forward.loss, out_forward.llm_logits)):
        raise ConversionError("the converted bridge gives non-finite outputs")
    return report


def convert(args) -> Path:
    started = time.perf_counter()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise ConversionError(f"--out {str(out)!r} is not empty: choose a new folder or pass --overwrite")
    original = Original(args.source, args.revision, args.cache_dir, args.allow_pickle)
    print(f"original: {original.source} ({'local folder' if os.path.isdir(args.source) else 'revision ' + original.revision}), "
          f"{len(original.shapes)} tensors in {len(original.files())} file(s), {original.total_bytes / 1e9:.2f} GB")
    config = bridge_config(original, args.nmt, args.llm, args.stage)
    with torch.device("meta"):  # names and shapes only: the bases are never materialised here
        skeleton = XBridgeForConditionalGeneration(config)
    names = check_keys(original, skeleton)
    bridge_keys = [k for k, n in names.items() if skeleton.is_bridge_parameter(n)]
    params = dict(skeleton.named_parameters())
    bridge = {names[k]: t.reshape(params[names[k]].shape).to(torch.float32).contiguous()
              for k, t in original.read(bridge_keys).items()}
    sample = sample_base_keys(names, skeleton, args.check_tensors)
    readers = {"nmt": base_file_reader(args.nmt), "llm": base_file_reader(args.llm)} if sample else {}
    aliases = tied_names(skeleton)
    on_files = [k for k in sample if readers.get(names[k].split(".")[0])]
    report = compare_bases(original, on_files, names,
                           lambda key, name: readers[name.split(".")[0]]([a.split(".", 1)[1] for a in aliases[name]], CHECK_ROWS),
                           args.allow_base_mismatch)
    deferred = [k for k in sample if k not in on_files]
    if deferred and args.skip_verify:
        warnings.warn(f"{len(deferred)} sampled base tensors not compared: the bases have no safetensors files and "
                      f"--skip_verify loads no base", stacklevel=2)
    skeleton.generation_config.max_new_tokens = original.config.get("max_gen_len")
    # Written next to --out (same parent: the relative base paths stay right) and moved there once every check
    # passed, so a failed verification leaves no half-checked bridge behind.
    staging = out.with_name(out.name + ".converting")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        skeleton.save_pretrained(staging, state_dict=bridge)
        processor = XBridgeProcessor.from_bases(args.nmt, args.llm, prompt_template=RELEASE_PROMPT,
                                                use_chat_template=False, source_in_prompt=True)
        processor.save_pretrained(staging)
        write_bundle(staging)  # last, so the remote code is the package's whatever the saves above copied
        converted_s, peak = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        if not args.skip_verify:
            report += verify(staging, original, deferred, names, args.dtype, args.check_text, args.check_lang,
                             args.check_new_tokens, bool(deferred), args.allow_base_mismatch)
            print(f"verification: {time.perf_counter() - started - converted_s:.1f} s")
        with open(staging / "README.md", "a", encoding="utf-8") as f:
            f.write(model_card_section(original, report, config.stage, args.stage is None,
                                       None if args.skip_verify else args.dtype))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)  # empty, or --overwrite
    staging.rename(out)
    n_bridge = sum(t.numel() for t in bridge.values())
    print("\n".join(report))
    print(f"converted: {len(bridge)} bridge tensors ({n_bridge / 1e6:.3f}M parameters, stage {config.stage}) -> {out}\n"
          f"size: {directory_bytes(out) / 1e9:.3f} GB (bridge weights {(out / 'model.safetensors').stat().st_size / 1e9:.3f} GB, "
          f"fp32) instead of {original.total_bytes / 1e9:.2f} GB; the bases load by name ({args.nmt}, {args.llm})\n"
          f"conversion: {converted_s:.1f} s, peak memory {peak:.2f} GB (before the verification run)")
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m train.convert_original",
        description="Convert an XBridge checkpoint in the authors' layout (one fp32 checkpoint with model_mt.*, "
                    "model_llm.*, mapping_enc2llm.*, mapping_llm2dec.*) into a bridge-only checkpoint of this package: "
                    "bridge weights, processor, remote code and a model card, loadable with "
                    "AutoModel.from_pretrained(out, trust_remote_code=True) and ready to upload as it is.",
        epilog="example: python -m train.convert_original ICTNLP/XBridge-SFT --nmt facebook/nllb-200-distilled-1.3B "
               "--llm meta-llama/Meta-Llama-3-8B --out xbridge-sft",
    )
    parser.add_argument("source", help="the original checkpoint: a local folder, or a Hub id (downloaded with "
                        "snapshot_download; HF_HUB_OFFLINE=1 uses the cache only)")
    parser.add_argument("--nmt", required=True, help="Hub id or folder of the NLLB model the checkpoint was trained with, "
                        "referenced by the output (the release: facebook/nllb-200-distilled-1.3B); the paths in the "
                        "original config.json are the authors' and are not used")
    parser.add_argument("--llm", required=True, help="Hub id or folder of the LLM it was trained with "
                        "(the release: meta-llama/Meta-Llama-3-8B)")
    parser.add_argument("--out", required=True, help="output folder (must be empty unless --overwrite)")
    parser.add_argument("--revision", help="branch, tag or commit of a Hub source (default: main); the commit "
                        "converted is recorded in the model card")
    parser.add_argument("--cache_dir", help="Hugging Face cache folder for a Hub source (default: the usual cache)")
    parser.add_argument("--stage", type=int, choices=(1, 2, 3), help="last training stage, for the config and model "
                        "card (default: inferred from the freeze_mapping_* flags of the original config: both sides "
                        "trainable = 1, encoder side only = 2, decoder side only = 3)")
    parser.add_argument("--check_tensors", type=int, default=8, help="base tensors sampled per base and compared "
                        "(first %d rows) with the named bases; fetches the base files that hold them, as loading the "
                        "bridge later would (default: 8; 0: none)" % CHECK_ROWS)
    parser.add_argument("--allow_base_mismatch", action="store_true", help="warn instead of failing when the bases "
                        "inside the checkpoint differ from the named ones")
    parser.add_argument("--allow_pickle", action="store_true", help="accept pytorch_model*.bin weights (read with "
                        "torch.load(weights_only=True, mmap=True)); refused by default, since unpickling can run code")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16", "auto"),
                        help="dtype the bases are loaded in for the verification run (default float32, as the release "
                        "ran; bfloat16 halves its memory). The output stores no base: users pick the bases' dtype when "
                        "loading (from_pretrained(out, dtype=torch.bfloat16)). The bridge weights are saved in fp32")
    parser.add_argument("--skip_verify", action="store_true", help="do not load the bases to run the converted bridge "
                        "(for machines that cannot hold them); the key, shape and base-file checks still run")
    parser.add_argument("--check_text", default="Mary ana machungwa 3 na ananunua 4 zaidi. Ana machungwa mangapi sasa?",
                        help="source text of the verification forward and generation")
    parser.add_argument("--check_lang", default="swh_Latn", help="its NLLB language code, also the target language")
    parser.add_argument("--check_new_tokens", type=int, default=16, help="greedy tokens generated by the verification")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out (only once the new "
                        "conversion has passed its checks)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        convert(args)
    except ConversionError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
