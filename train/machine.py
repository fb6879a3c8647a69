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


# The CPU kernels every job of the mini-world and real-world runners uses, whatever CPU runs it (environment of their
# processes, read once at each one's start). The same operation computes different last bits on AVX-512 and AVX2
# kernels, and a trained bridge amplifies them (issue 30: 12 points apart between two kinds of CPU), so every job
# takes the AVX2 path that any x86-64 CPU since 2013 has: ATen's vectorised kernels, MKL's BLAS (conditional numerical
# reproducibility: the same branch, the same bits on Intel and AMD), oneDNN and CTranslate2. `XBRIDGE_KERNELS=native`
# lets each library pick its best kernels (faster on AVX-512, but results then depend on the CPU).
PORTABLE_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                    "CT2_FORCE_CPU_ISA": "AVX2"}
KERNELS_ENV = "XBRIDGE_KERNELS"


def kernel_env() -> dict[str, str]:
    """The kernel pins jobs run under: PORTABLE_KERNELS, or none with XBRIDGE_KERNELS=native."""
    choice = os.environ.get(KERNELS_ENV, "portable")
    if choice not in ("portable", "native"):
        raise ValueError(f"{KERNELS_ENV}={choice!r}: use 'portable' (the default: AVX2 kernels everywhere) or 'native'")
    return dict(PORTABLE_KERNELS) if choice == "portable" else {}


def process_kernels() -> dict:
    """The kernels this process computes with: ATen's dispatch level and the pins in its environment."""
    import torch  # noqa: PLC0415

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            **{key: os.environ[key] for key in PORTABLE_KERNELS if key in os.environ}}


def machine() -> dict:
    """The CPU, the kernels torch picked for it (AVX2, AVX512; the last bits of a float can differ between them),
    bf16 support, thread and core counts, library versions and the load average now."""
    import torch  # noqa: PLC0415  (imported on use: this module stays light)
    import transformers  # noqa: PLC0415

    return {
        "cpu": cpu_name(),
        "platform": platform.platform(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # of this process (jobs: run_info's job_kernels)
        "cores_visible": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
        "amx": bool(torch.cpu._is_amx_tile_supported()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "load_average_start": load_average(),
    }


__all__ = ["PORTABLE_KERNELS", "cpu_name", "kernel_env", "load_average", "machine", "process_kernels"]
