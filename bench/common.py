"""Shared pieces of the benchmark: the machine, timing, the models at each scale, random inputs."""

import gc
import json
import statistics
import sys
import tempfile
import time
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):  # the flat Hub bundle and the tiny bases import as top-level modules
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from configuration_xbridge import ENGLISH, XBridgeConfig  # noqa: E402
from modeling_xbridge import XBridgeForConditionalGeneration  # noqa: E402
from train.machine import load_average, machine  # noqa: E402, F401  (the machine: shared with the mini-world)

CONFIGS = Path(__file__).resolve().parent / "configs"
REAL_SHAPES = {"600M+0.5B": ("nllb-200-distilled-600M", "qwen2.5-0.5b"), "1.3B+7B": ("nllb-200-1.3B", "qwen2.5-7b")}
# Ten target languages; at real scale they are mapped to ids near the end of the NLLB vocabulary, where
# the real tokenizer keeps its language codes.
LANGS = ["swh_Latn", "deu_Latn", "fra_Latn", "spa_Latn", "rus_Cyrl", "ben_Beng", "tha_Thai", "zho_Hans", "jpn_Jpan", "tel_Telu"]


# ---------------------------------------------------------------- timing
WARMUP = 1  # untimed runs before each measurement (0 in quick mode: smoke test, no timings asserted)


def timeit_many(fns: dict, repeats: int, warmup: int | None = None) -> dict:
    """Round-robin timing of several functions: run r times each, in turn, so load drift on the shared machine
    hits every system alike. Per function: median process CPU time (`median_s`; with one torch thread this is
    the work done, whatever share of a core the scheduler gave us) and median wall time (`wall_median_s`)."""
    warmup = WARMUP if warmup is None else warmup
    cpu, wall = {k: [] for k in fns}, {k: [] for k in fns}
    for r in range(warmup + repeats):
        for name, fn in fns.items():
            c, w = time.process_time(), time.perf_counter()
            fn()
            if r >= warmup:
                cpu[name].append(time.process_time() - c)
                wall[name].append(time.perf_counter() - w)
    return {k: {"median_s": statistics.median(cpu[k]), "wall_median_s": statistics.median(wall[k]),
                "cpu_runs_s": [round(t, 4) for t in cpu[k]], "wall_runs_s": [round(t, 4) for t in wall[k]]}
            for k in fns}


def timeit(fn, repeats: int, warmup: int | None = None) -> dict:
    return timeit_many({"fn": fn}, repeats, warmup)["fn"]


def bf16_probe(repeats: int = 5) -> dict:
    """fp32 vs bf16 matmul at decode (M=1, 16) and training (M=512) sizes: is bf16 actually faster here?"""
    out = {}
    for m in (1, 16, 512):
        row = {}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            a, b = torch.randn(m, 1024, dtype=dtype), torch.randn(1024, 4096, dtype=dtype)
            row[name] = timeit(lambda: a @ b, repeats=repeats * 4, warmup=3)["wall_median_s"] * 1e3
        out[f"M={m}"] = {"fp32_ms": round(row["fp32"], 3), "bf16_ms": round(row["bf16"], 3),
                         "bf16_speedup": round(row["fp32"] / row["bf16"], 2)}
    return out


class TensorMemoryTracker(TorchDispatchMode):
    """Exact live bytes of the tensors created inside the block (CPU has no allocator statistics).

    Every aten op's outputs are recorded by storage; a storage counts until its tensor is collected. Gives the
    peak above the entry level, the largest single tensor, and (with `pair=(Lx, Ly)`) the peak of the tensors
    that have both an Lx and an Ly axis: the memory that grows with Lx * Ly, to compare with the cost matrix.
    """

    def __init__(self, pair: tuple[int, int] | None = None):
        super().__init__()
        self.pair = pair

    def __enter__(self):
        self.live, self.current, self.peak, self.largest, self.largest_shape = {}, 0, 0, 0, None
        self.pair_current, self.pair_peak = 0, 0
        return super().__enter__()

    def _is_pairwise(self, shape) -> bool:
        if self.pair is None:
            return False
        dims = list(shape)
        for size in self.pair:  # two distinct axes, also when Lx == Ly
            if size not in dims:
                return False
            dims.remove(size)
        return True

    def _free(self, key):
        nbytes, pairwise = self.live.pop(key, (0, False))
        self.current -= nbytes
        self.pair_current -= nbytes if pairwise else 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            key = t.untyped_storage().data_ptr()
            if key in self.live or key == 0:
                continue  # a view or an in-place result: its storage is already counted
            nbytes, pairwise = t.untyped_storage().nbytes(), self._is_pairwise(t.shape)
            self.live[key] = (nbytes, pairwise)
            self.current += nbytes
            self.peak = max(self.peak, self.current)
            if pairwise:
                self.pair_current += nbytes
                self.pair_peak = max(self.pair_peak, self.pair_current)
            if nbytes > self.largest:
                self.largest, self.largest_shape = nbytes, tuple(t.shape)
            weakref.finalize(t, self._free, key)
        return out


# ---------------------------------------------------------------- models
def read_config(name: str) -> dict:
    cfg = json.loads((CONFIGS / f"{name}.json").read_text())
    cfg.pop("_source", None)
    return cfg


def bridge_config(nmt: dict, llm: dict, **kwargs) -> XBridgeConfig:
    """A bridge over two base configs, its language codes near the end of the NMT's vocabulary like NLLB's own
    (eng_Latn first)."""
    vocab = nmt["vocab_size"]
    codes = {lang: vocab - 3 - i for i, lang in enumerate([ENGLISH, *LANGS])}
    return XBridgeConfig(nmt_config=dict(nmt), llm_config=dict(llm), lang_code_to_id=codes, **kwargs)


def real_config(shape: str = "600M+0.5B") -> XBridgeConfig:
    nmt_name, llm_name = REAL_SHAPES[shape]
    return bridge_config(read_config(nmt_name), read_config(llm_name), nmt_name_or_path=f"random/{nmt_name}",
                         llm_name_or_path=f"random/{llm_name}")


_TINY_DIR = None


def tiny_model():
    """The tiny offline bases of the tests (built once per process into a temporary folder)."""
    global _TINY_DIR
    from tiny_bases import build_tiny_bases

    if _TINY_DIR is None:
        _TINY_DIR = tempfile.mkdtemp(prefix="xbridge-bench-tiny-")
    bases = build_tiny_bases(Path(_TINY_DIR))
    return XBridgeForConditionalGeneration.from_bases(bases["nmt"], bases["llm"])


def build_model(scale: str, dtype=torch.float32):
    """An XBridge model in eval mode: tiny offline bases, or real-size shapes with random weights."""
    torch.manual_seed(0)
    model = tiny_model() if scale == "tiny" else XBridgeForConditionalGeneration(real_config())
    model.to(dtype)
    for cfg in (model.config.nmt_config, model.config.llm_config):
        cfg.use_cache = True
    return model.eval()


def free(*objs):
    del objs
    gc.collect()


# ---------------------------------------------------------------- inputs
def nmt_sentence(model, batch: int, length: int, lang: str, generator) -> torch.Tensor:
    """`[lang_code, x..., </s>]` of random NLLB ids (no padding: every row has `length` tokens)."""
    cfg = model.config.nmt_config
    lang_ids = set(model.config.lang_code_to_id.values())
    low, high = 4, min(lang_ids) if lang_ids else cfg.vocab_size  # plain tokens sit below the language codes
    body = torch.randint(low, high, (batch, length - 2), generator=generator)
    code = torch.full((batch, 1), model.config.lang_id(lang, "src_lang"))
    return torch.cat([code, body, torch.full((batch, 1), cfg.eos_token_id)], dim=1)


def llm_tokens(model, batch: int, length: int, generator) -> torch.Tensor:
    """Random LLM ids below the special tokens (Qwen's start at 151643)."""
    high = min(model.config.llm_config.vocab_size, 151643)
    return torch.randint(0, high, (batch, length), generator=generator)
