"""Named configs of the 3-D UniFormer: the published BrainMVP UniFormer-S and the CPU demo."""
from __future__ import annotations

from ..registry import register_preset


register_preset(
    "brainmvp-uniformer-s",
    {
        "family": "uniformer3d",
        "depth": [3, 4, 8, 3],
        "embed_dim": [64, 128, 320, 512],
        "head_dim": 64,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "in_chans": 1,
        "img_size": 96,
        "checkpoint": None,
    },
    "BrainMVP UniFormer-S (3-D, 96³ T1 → 6³ = 216 tokens of width 512). Give the released "
    "checkpoint as {'preset': 'brainmvp-uniformer-s', 'checkpoint': '/path/BrainMVP_uniformer.pt'}.",
)

register_preset(
    "brainmvp-demo",
    {
        "family": "uniformer3d",
        "depth": [1, 1, 2, 1],
        "embed_dim": [8, 16, 32, 48],
        "head_dim": 16,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "in_chans": 1,
        "img_size": 64,
        "checkpoint": "resource:pretrained/brainmvp_demo.safetensors",
        "readout": "pyramid",
    },
    "Small UniFormer of the same architecture for the CPU demo (64³ T1 → 4³ = 64 tokens of "
    "width 48; spatial-pyramid readout of 240 values), pretrained by masked-volume reconstruction on an unlabeled synthetic cohort "
    "(`anchorad pretrain`; resources/pretrained/PROVENANCE.json).",
)
