#!/usr/bin/env bash
# Set up and run the test suite (the README's test command). CPU only, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0          # CPU wheel; an unpinned torch pulls a CUDA build
python -m pip install -q -e ".[gui,test]"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python -m pytest -q
