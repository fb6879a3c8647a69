"""XBridge evaluation harness: benchmarks, systems, metrics, report. CLI: `python -m eval --help`."""
