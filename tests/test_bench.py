"""Smoke test of the performance benchmark: `python -m bench --quick` produces every number and file.

Timings are never asserted (a shared CI machine makes them meaningless); only that they exist and are sane.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_bench_quick_produces_numbers_and_files(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--threads", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("bench.json", "bench.md", "generation_latency_quick.png", "k_languages_quick.png"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "bench.json").read_text())
    assert results["machine"]["torch"] and len(results["machine"]["load_average_start"]) == 3

    gen = results["scales"]["quick"]["generation"]
    assert set(gen["batches"]) == {"B=1", "B=16"}
    for row in gen["batches"].values():
        assert _positive(row["xbridge"]["median_s"]) and _positive(row["parts_sum_s"])
        assert _positive(row["translate_test"]["median_s"]) and _positive(row["rerun_reference"]["median_s"])
        assert set(row["parts"]) == {"nllb_encoder", "llm_generate", "nllb_decoder_generate"}
    assert [c["K"] for c in gen["k_languages"]["curve"]] == [1, 2, 4, 8]

    train = results["scales"]["quick"]["training"]
    assert set(train["ot"]) == {"relaxed", "sinkhorn"}
    for row in train["ot"].values():
        assert _positive(row["tokens_per_s"]) and _positive(row["step_peak_tensor_bytes"])
        assert 0 < row["ot_share"] < 1
        # Memory is deterministic, unlike time: the OT never builds a (B, Lx, Ly, d) tensor.
        for solo in (row["ot_alone"], row["ot_long_shapes"]):
            assert solo["no_4d_tensor"], solo

    # Throughput on real data (issue 15): every case present, the before/after widths honest.
    for name in ("throughput.md", "throughput.json", "throughput.png"):
        assert (out / name).stat().st_size > 0, name
    tp = json.loads((out / "throughput.json").read_text())
    assert len(tp["load_average_start"]) == 3 and len(tp["load_average_end"]) == 3
    for case in tp["train"].values():
        rows = list(case["variants"].values())
        assert len(rows) == 3 and all(_positive(r["tokens_per_s"]) for r in rows)
        # Positions the LLM computes (deterministic): squeezing, then grouping, each remove padding.
        assert rows[0]["llm_positions"] > rows[1]["llm_positions"] > rows[2]["llm_positions"]
    for row in tp["prefill"].values():
        assert row["width_before"] >= row["width_after"] and _positive(row["after_s"])
    if tp["ctranslate2"]:
        for case in tp["nmt_forced"].values():
            assert set(case["engines"]) == {"generate()", "ctranslate2 float32", "ctranslate2 int8"}
            assert all(_positive(r["sentences_per_s"]) for r in case["engines"].values())
    assert "## Training tokens/s" in (out / "throughput.md").read_text()

    md = (out / "bench.md").read_text()
    for heading in ("## Machine", "## Targets", "## Generation, quick", "## Training step, quick"):
        assert heading in md


def test_sizes_on_meta_device_match_published_parameter_counts():
    sys.path.insert(0, str(ROOT))
    from bench.size import count

    sizes = count("600M+0.5B")
    # NLLB-200-distilled-600M has 615M parameters, Qwen2.5-0.5B 494M (tied embeddings counted once).
    assert round(sizes["nmt_params"] / 1e6) == 615 and round(sizes["llm_params"] / 1e6) == 494
    assert sizes["trainable_params"]["stage1"] == sizes["bridge_params"] < 0.1 * sizes["total_params"]
