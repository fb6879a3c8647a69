"""What a run was measured on: written beside timings and results (never into results: they must repeat).

Shared by the benchmark (`bench/`) and the mini-world's run record (`miniworld/pipeline.py`); here, below both,
so neither imports the other for it.
"""

import os
import platform
from pathlib import Path


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none): how busy the shared machine was."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpu_name() -> str:
    """The CPU model (`/proc/cpuinfo`), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The CPU, the kernels torch picked for it (AVX2, AVX512; the last bits of a float can differ between them),
    bf16 support, thread and core counts, library versions and the load average now."""
    import torch  # noqa: PLC0415  (imported on use: this module stays light)
    import transformers  # noqa: PLC0415

    return {
        "cpu": cpu_name(),
        "platform": platform.platform(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores_visible": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
        "amx": bool(torch.cpu._is_amx_tile_supported()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "load_average_start": load_average(),
    }


__all__ = ["cpu_name", "load_average", "machine"]
