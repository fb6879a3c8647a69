"""Converting the paper's checkpoint at its real shapes: the size of the converted bridge, and the time and peak
memory of `python -m train.convert_original` on a real-shaped original checkpoint built from random weights.

    python -m bench.convert_original --work /tmp/convert-bench [--keep]

Shapes: NLLB-200-distilled-1.3B (the shapes of bench/configs/nllb-200-1.3B.json) x Meta-Llama-3-8B (published config,
below), the layout of ICTNLP/XBridge-SFT: every weight in fp32 (~38 GB), 5 GB shards, `model_mt.*`, `model_llm.*`,
then the mappings. A 38 GB file of random numbers would take half of this machine's free disk, so the shards are
sparse files of the full size: every byte the converter reads (all bridge tensors; the first rows of every base
tensor, of which it samples some) holds random data, the rest are holes it never reads. The named bases are built
the same way (NLLB fp32, Llama bf16 in 4 shards of <= 5 GB, as on the Hub), their first rows equal to the checkpoint's. The
files are flushed and dropped from the page cache before converting, so the reads come from disk. Tokenizers are
the tests' tiny stand-ins (no download here); the verification run (loading both bases) is skipped: at these
shapes it needs ~38 GB of memory in fp32, ~19 GB in bf16, more than this machine has.
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from configuration_xbridge import XBridgeConfig  # noqa: E402
from modeling_xbridge import XBridgeForConditionalGeneration  # noqa: E402
from train.convert_original import CHECK_ROWS, original_name  # noqa: E402

NLLB = json.loads((ROOT / "bench" / "configs" / "nllb-200-1.3B.json").read_text())  # distilled-1.3B: same shapes
LLAMA3_8B = {  # meta-llama/Meta-Llama-3-8B config.json (published shapes)
    "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_act": "silu",
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "bos_token_id": 128000,
    "eos_token_id": 128001, "tie_word_embeddings": False, "attention_bias": False, "dtype": "bfloat16",
}
SHARD_BYTES = 5 * 10**9
DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16"}


def skeleton():
    """The package model at the release's shapes, on the meta device (shapes only)."""
    nmt = {k: v for k, v in NLLB.items() if not k.startswith("_")}
    config = XBridgeConfig(nmt_config=nmt, llm_config=dict(LLAMA3_8B), enc_map_hidden_size=4 * nmt["d_model"],
                           dec_map_hidden_size=2 * LLAMA3_8B["hidden_size"], nmt_name_or_path="nmt", llm_name_or_path="llm")
    with torch.device("meta"):
        return XBridgeForConditionalGeneration(config)


def original_layout(model) -> dict:
    """Original key -> shape, in the release's order; tied NLLB embeddings saved once."""
    tied = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")
    shapes = {}
    for name, param in model.named_parameters():  # nmt, llm, enc_map, boundary, dec_map: the original's order
        if name.startswith("nmt.") and name[4:] in tied:
            continue
        key = original_name(name)
        shapes[key] = (1, 1, param.shape[0]) if name == "boundary" else tuple(param.shape)
    shapes["mapping_llm2dec.end_boundary"] = (1, 1, model.config.nmt_hidden_size)
    return shapes


def rows(key: str, shape, n: int, dtype) -> torch.Tensor:
    """Deterministic random values for the first n rows of `key` (the same in the checkpoint and in the base)."""
    generator = torch.Generator().manual_seed(zlib.crc32(re.sub(r"^model_(mt|llm)\.", "", key).encode()))
    head = (min(n, shape[0]), *shape[1:]) if shape else ()
    return (torch.randn(head, generator=generator) * 0.02).to(dtype)


def write_sparse(path: Path, shapes: dict, dtype, full: set) -> int:
    """One safetensors file of the given tensors: `full` ones entirely random, the others only their first rows."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    size = torch.finfo(dtype).bits // 8
    for key, shape in shapes.items():
        nbytes = math.prod(shape) * size
        header[key] = {"dtype": DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    start = 8 + len(blob)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little") + blob)
        f.truncate(start + offset)  # holes everywhere, then the bytes that will be read
        for key, shape in shapes.items():
            n = shape[0] if (key in full or not shape) else CHECK_ROWS
            data = rows(key, shape, n, dtype)
            f.seek(start + header[key]["data_offsets"][0])
            f.write(data.contiguous().view(torch.uint8).numpy().tobytes() if data.numel() else b"")
        f.flush()
        os.fsync(f.fileno())
    return start + offset


def write_checkpoint(folder: Path, shapes: dict, dtype, full: set, config: dict) -> int:
    """Shards of at most SHARD_BYTES in key order, with an index (or one file), as save_pretrained writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    size = torch.finfo(dtype).bits // 8
    shards, current, used = [], {}, 0
    for key, shape in shapes.items():
        nbytes = math.prod(shape) * size
        if current and used + nbytes > SHARD_BYTES:
            shards.append(current)
            current, used = {}, 0
        current[key], used = shape, used + nbytes
    shards.append(current)
    if len(shards) == 1:
        return write_sparse(folder / "model.safetensors", shards[0], dtype, full)
    total, weight_map = 0, {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_sparse(folder / name, shard, dtype, full)
        weight_map.update({k: name for k in shard})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return total


def drop_page_cache(folder: Path) -> None:
    """Evict the (flushed) files from the page cache, so the converter reads them from disk."""
    for file in folder.rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


def allocated_bytes(folder: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file())


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.convert_original", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/xbridge-convert-bench", help="scratch folder (~3 GB of real data)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    model = skeleton()
    shapes = original_layout(model)
    bridge_names = {n for n, _ in model.named_parameters() if model.is_bridge_parameter(n)}
    bridge = {original_name(n) for n in bridge_names}
    n_bridge = sum(p.numel() for n, p in model.named_parameters() if n in bridge_names)
    print(f"bridge at the real shapes: {n_bridge / 1e6:.1f}M parameters = {n_bridge * 4 / 1e9:.3f} GB in fp32", flush=True)

    from tiny_bases import build_tiny_bases  # tokenizer stand-ins (the real ones cannot be downloaded here)

    tiny = build_tiny_bases(work / "tiny")
    started = time.perf_counter()
    original_config = {
        "model_type": "llama", "architectures": ["XBridgeModel"], "mt_path": "/data/models/nllb-200-distilled-1.3B",
        "llm_path": "/data/models/llama3-8B", "dec_lambda": 1.0, "ot_lambda": 6.0, "max_gen_len": 512,
        "mt_pad_token_id": 1, "mt_eos_token_id": 2, "llm_bos_token_id": 128000, "llm_eos_token_id": 128001,
        "llm_pad_token_id": 128002, "freeze_mapping_enc2llm": True, "freeze_mapping_llm2dec": False,
        "mt_vocab_size": NLLB["vocab_size"], "hidden_act": "silu", "rms_norm_eps": 1e-6, "torch_dtype": "float32",
    }
    original_bytes = write_checkpoint(work / "original", shapes, torch.float32, bridge, original_config)
    nmt_shapes = {k[len("model_mt."):]: s for k, s in shapes.items() if k.startswith("model_mt.")}
    llm_shapes = {k[len("model_llm."):]: s for k, s in shapes.items() if k.startswith("model_llm.")}
    write_checkpoint(work / "nllb", nmt_shapes, torch.float32, set(), {k: v for k, v in NLLB.items() if not k.startswith("_")})
    write_checkpoint(work / "llama", llm_shapes, torch.bfloat16, set(), LLAMA3_8B)
    for name, folder in (("nmt", "nllb"), ("llama", "llama")):
        for file in Path(tiny[name]).iterdir():
            if "token" in file.name or file.name.endswith(".model"):
                shutil.copy(file, work / folder / file.name)
    print(f"built in {time.perf_counter() - started:.0f} s: original {original_bytes / 1e9:.2f} GB apparent, "
          f"{allocated_bytes(work / 'original') / 1e9:.2f} GB allocated", flush=True)
    drop_page_cache(work)

    command = [sys.executable, "-m", "train.convert_original", str(work / "original"), "--nmt", str(work / "nllb"),
               "--llm", str(work / "llama"), "--out", str(work / "converted"), "--skip_verify"]
    wall = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", *command] if Path("/usr/bin/time").exists() else command,
                            cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - wall
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    print(result.stdout[-2500:])
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    numbers = {
        "bridge_params": n_bridge,
        "original_bytes": original_bytes,
        "converted_weights_bytes": (work / "converted" / "model.safetensors").stat().st_size,
        "converted_folder_bytes": sum(f.stat().st_size for f in (work / "converted").rglob("*") if f.is_file()),
        "convert_wall_s": round(wall, 1),
        "convert_peak_rss_bytes": int(rss.group(1)) * 1024 if rss else None,
    }
    print(json.dumps(numbers, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return numbers


if __name__ == "__main__":
    main()
