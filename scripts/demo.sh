#!/usr/bin/env bash
# Set up AnchorAD and run the main job on the embedded demo (the README's demo command).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0          # CPU wheel; an unpinned torch pulls a CUDA build
python -m pip install -q -e ".[gui]"           # the napari plugin is the main face of the tool
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
anchorad demo --out anchorad-demo "$@"
