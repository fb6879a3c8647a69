#!/usr/bin/env bash
# The README's test command: install (CPU torch pinned so pip never pulls CUDA wheels) and run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "torch==2.13.0" -e ".[all]"
python -m pytest -q "$@"
