"""bench.json, bench.md (every target with met / not met) and the PNG plots."""

import json
from pathlib import Path

TARGETS = {"overhead": 0.05, "translate_test": 0.75, "ot_relaxed": 0.02, "ot_sinkhorn": 0.10}


def _mib(n):
    return f"{n / 2**20:.1f} MiB"


def _met(ok):
    return "met" if ok else "**not met**"


def target_rows(results: dict) -> list[dict]:
    rows = []
    for scale, res in results["scales"].items():
        for b, row in res.get("generation", {}).get("batches", {}).items():
            rows.append(dict(target="(a) XBridge vs its parts alone: overhead", scale=scale, case=b,
                             measured=f"{row['overhead']:+.1%}", goal="<= +5%", met=row["overhead"] <= TARGETS["overhead"]))
            r = row["ratio_vs_translate_test"]
            rows.append(dict(target="(b) XBridge / Translate-Test", scale=scale, case=b, measured=f"{r:.2f}x",
                             goal="<= 0.75x", met=r <= TARGETS["translate_test"]))
            rows.append(dict(target="(c) saving vs re-running the LLM", scale=scale, case=b,
                             measured=f"{row['saving_vs_rerun']:.1%}", goal="report", met=None))
        k = res.get("generation", {}).get("k_languages")
        if k:
            curve = ", ".join(f"K={c['K']}: {c['speedup']:.2f}x" for c in k["curve"])
            rows.append(dict(target="(d) K languages, K calls / one call", scale=scale, case=f"B={k['batch']}",
                             measured=curve, goal="report", met=None))
        for name, row in res.get("training", {}).get("ot", {}).items():
            rows.append(dict(target=f"OT share of the step ({name})", scale=scale, case="stage 1",
                             measured=f"{row['ot_share']:.2%}", goal=f"<= {TARGETS['ot_' + name]:.0%}",
                             met=row["ot_share"] <= TARGETS["ot_" + name]))
            for label, solo in (("train shape", row["ot_alone"]), ("long shape", row["ot_long_shapes"])):
                s = solo["shape"]
                rows.append(dict(
                    target=f"OT memory ({name}): no (B,Lx,Ly,d) tensor", scale=scale,
                    case=f"{label} B={s['B']} Lx={s['Lx']} Ly={s['Ly']} d={s['d']}",
                    measured=f"pairwise peak {solo['pairwise_over_cost']:.1f}x cost ({_mib(solo['cost_matrix_bytes'])}), "
                             f"total peak {_mib(solo['peak_bytes'])}; largest tensor {solo['largest_tensor_shape']}",
                    goal="largest tensor <= max(cost, input); pairwise peak <= 2x cost",
                    met=solo["no_4d_tensor"] and solo["pairwise_within_2x_cost"]))
    return rows


def md_table(header: list[str], rows) -> list[str]:
    """A markdown table as lines: the header, the `---` rule, one line per row (each cell str()-ed). The one table
    writer of the benchmark's reports (bench.md, throughput.md)."""
    def line(cells):
        return "| " + " | ".join(str(c) for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(row) for row in rows)]


def write_markdown(results: dict, out: Path, notes: str = "") -> None:
    m = results["machine"]
    lines = ["# XBridge performance benchmark", "",
             f"Command: `{results['command']}`", "",
             "## Machine", ""]
    lines += md_table(["field", "value"], m.items())
    lines += ["", "bf16 probe (one (M x 1024) @ (1024 x 4096) matmul, ms):", ""]
    lines += md_table(["M", "fp32", "bf16", "bf16 speed-up"],
                      ([k, v["fp32_ms"], v["bf16_ms"], f"{v['bf16_speedup']}x"] for k, v in results["bf16_probe"].items()))
    lines += ["", f"Dtypes used: {json.dumps(results['dtypes'])}", "", "## Targets", ""]
    lines += md_table(["target", "scale", "case", "measured", "goal", "status"],
                      ([r["target"], r["scale"], r["case"], r["measured"], r["goal"],
                        "reported" if r["met"] is None else _met(r["met"])] for r in target_rows(results)))
    for scale, res in results["scales"].items():
        gen = res.get("generation")
        if gen:
            L = gen["lengths"]
            lines += ["", f"## Generation, {scale} (median process CPU seconds, 1 thread; source {L['src']}, prompt {L['prompt']}, "
                      f"{L['english']} English + {L['target']} target tokens forced)", ""]
            lines += md_table(
                ["batch", "XBridge", "encoder", "LLM generate", "decoder generate", "parts sum", "Translate-Test",
                 "re-run reference"],
                ([b, f"{row['xbridge']['median_s']:.3f}", f"{row['parts']['nllb_encoder']['median_s']:.3f}",
                  f"{row['parts']['llm_generate']['median_s']:.3f}",
                  f"{row['parts']['nllb_decoder_generate']['median_s']:.3f}", f"{row['parts_sum_s']:.3f}",
                  f"{row['translate_test']['median_s']:.3f}", f"{row['rerun_reference']['median_s']:.3f}"]
                 for b, row in gen["batches"].items()))
            lines += ["", f"K target languages (batch {gen['k_languages']['batch']}):", ""]
            lines += md_table(["K", "one call (s)", "K separate calls (s)", "speed-up"],
                              ([c["K"], f"{c['one_call_s']:.3f}", f"{c['separate_calls_s']:.3f}", f"{c['speedup']:.2f}x"]
                               for c in gen["k_languages"]["curve"]))
        tr = res.get("training")
        if tr:
            L = tr["lengths"]
            lines += ["", f"## Training step, {scale} (stage 1, three losses, {tr['dtype']}, batch {tr['batch']}, "
                      f"source {L['src']}, answer {L['answer']}, target {L['target']}, OT target {L['ot_target']}; "
                      f"{tr['trainable_params']:,} trainable parameters)", ""]
            lines += md_table(["OT", "step (CPU s)", "tokens/s", "step peak tensor memory", "OT fwd+bwd alone (s)",
                               "OT share"],
                              ([name, f"{row['step_s']:.3f}", f"{row['tokens_per_s']:.0f}",
                                _mib(row["step_peak_tensor_bytes"]), f"{row['ot_alone']['fwd_bwd_s']:.4f}",
                                f"{row['ot_share']:.2%}"] for name, row in tr["ot"].items()))
    if "sizes" in results:
        lines += ["", "## Parameters and checkpoint size at the real shapes (counted on the meta device)", ""]
        lines += md_table(
            ["shapes", "full model params", "bridge params", "stage 1 / 2 / 3 trainable", "bridge checkpoint (fp32)",
             "full model (bf16)", "bridge share"],
            ([shape, f"{s['total_params'] / 1e6:,.1f}M", f"{s['bridge_params'] / 1e6:,.1f}M",
              " / ".join(f"{s['trainable_params'][f'stage{i}'] / 1e6:.1f}M" for i in (1, 2, 3)),
              _mib(s["bridge_fp32_bytes"]), _mib(s["full_bf16_bytes"]), f"{s['bridge_share']:.1%}"]
             for shape, s in results["sizes"].items()))
        if results.get("saved_bridge_bytes"):
            per_param = results["saved_bridge_bytes"] / results["sizes"]["600M+0.5B"]["bridge_params"]
            lines += ["", f"A real bridge-only `save_pretrained` at 600M+0.5B wrote {_mib(results['saved_bridge_bytes'])} "
                      f"of model.safetensors ({per_param:.2f} bytes per bridge parameter: saved in the model's "
                      f"generation dtype, {results['dtypes']['generation']}, plus the safetensors header)."]
    lines += ["", f"Load average at the end: {results['load_average_end']} (at the start: {m['load_average_start']}).",
              f"Wall time of the whole benchmark: {results['wall_s']:.0f} s.", ""]
    if notes:
        lines += ["## Notes on the measurements and the gaps", "", notes.strip(), ""]
    (out / "bench.md").write_text("\n".join(lines), encoding="utf-8")


def write_plots(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for scale, res in results["scales"].items():
        gen = res.get("generation")
        if not gen:
            continue
        batches = list(gen["batches"])
        systems = [("XBridge", lambda r: r["xbridge"]["median_s"]), ("parts alone (sum)", lambda r: r["parts_sum_s"]),
                   ("Translate-Test", lambda r: r["translate_test"]["median_s"]),
                   ("re-run reference", lambda r: r["rerun_reference"]["median_s"])]
        fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 4), squeeze=False)
        for ax, b in zip(axes[0], batches):
            values = [f(gen["batches"][b]) for _, f in systems]
            ax.bar(range(len(systems)), values, color=["C0", "C7", "C3", "C1"])
            ax.set_xticks(range(len(systems)), [s for s, _ in systems], rotation=20, ha="right")
            ax.set_ylabel("median latency (s)")
            ax.set_title(f"{scale}, {b}")
        fig.tight_layout()
        path = out / f"generation_latency_{scale}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
        curve = gen["k_languages"]["curve"]
        fig, ax = plt.subplots(figsize=(5, 4))
        ks = [c["K"] for c in curve]
        ax.plot(ks, [c["one_call_s"] for c in curve], "o-", label="one call, K languages")
        ax.plot(ks, [c["separate_calls_s"] for c in curve], "s--", label="K separate calls")
        ax.set_xlabel("K target languages")
        ax.set_ylabel("median latency (s)")
        ax.set_xticks(ks)
        ax.set_title(f"{scale}, batch {gen['k_languages']['batch']}")
        ax.legend()
        fig.tight_layout()
        path = out / f"k_languages_{scale}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    return written


def write_all(results: dict, out: Path, notes: str = "") -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    results["plots"] = write_plots(results, out)
    (out / "bench.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    write_markdown(results, out, notes)
    return ["bench.json", "bench.md", *results["plots"]]


if __name__ == "__main__":  # python -m bench.report results/bench [notes.md]: re-render bench.md from bench.json
    import sys

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "results/bench")
    notes_path = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parent / "NOTES.md"
    data = json.loads((folder / "bench.json").read_text(encoding="utf-8"))
    write_markdown(data, folder, notes_path.read_text(encoding="utf-8") if notes_path.exists() else "")
    print(f"wrote {folder / 'bench.md'}")
