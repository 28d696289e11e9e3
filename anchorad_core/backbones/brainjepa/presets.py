"""Named configs of Brain-JEPA: the published ViT-B over 450 ROIs and the CPU demo."""
from __future__ import annotations

from ..registry import register_preset


register_preset(
    "brainjepa-vit-b",
    {
        "family": "brainjepa",
        "n_rois": 450,
        "n_frames": 160,
        "patch_size": 16,
        "embed_dim": 768,
        "depth": 12,
        "num_heads": 12,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "gradient_path": None,
        "checkpoint": None,
        "checkpoint_key": "target_encoder",
    },
    "Brain-JEPA ViT-B (450 ROIs = Tian-III 50 subcortical + Schaefer-400, 160 frames → 4500 "
    "tokens of width 768). Give gradient_path (Brain-JEPA's data/gradient_mapping_450.csv) "
    "and checkpoint (the released .pth.tar).",
)

register_preset(
    "brainjepa-demo",
    {
        "family": "brainjepa",
        "n_rois": 400,
        "n_frames": 48,
        "patch_size": 16,
        "embed_dim": 64,
        "depth": 2,
        "num_heads": 4,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "gradient_path": "resource:gradients/schaefer400_17n_gradients.csv",
        "checkpoint": "resource:pretrained/brainjepa_demo.safetensors",
        "checkpoint_key": "target_encoder",
        "readout": "connectivity",
        "connectivity_groups": 17,
    },
    "Small Brain-JEPA of the same architecture for the CPU demo (Schaefer-400 17-network ROIs, "
    "48 frames → 1200 tokens of width 64; shipped real HCP-derived gradients; connectivity "
    "readout over 17 gradient networks), pretrained with "
    "the JEPA objective on an unlabeled synthetic cohort (`anchorad pretrain`; "
    "resources/pretrained/PROVENANCE.json).",
)
