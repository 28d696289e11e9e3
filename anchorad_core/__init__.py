"""AnchorAD core library: data, backbones, the anchored method, training, inference, explanation and report. Qt-free.

The names below are the public API (``anchorad_gui`` imports only these and
:mod:`anchorad_core.session`). They are loaded on first use, so ``import anchorad_core`` stays
cheap (no torch, no Qt).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    # the session service and progress
    "Session": "session",
    "Step": "progress",
    "CancelToken": "progress",
    "Progress": "progress",
    "drive": "progress",
    # errors
    "AnchorADError": "errors",
    "BundleError": "errors",
    "CancelledError": "errors",
    "ConfigError": "errors",
    "InputDataError": "errors",
    # modalities and shipped resources
    "Modality": "modality",
    "ALL_MODALITIES": "modality",
    "resource_path": "resources",
    "resources_root": "resources",
    # reading inputs
    "find_subject_files": "data",
    "load_t1": "data",
    "read_roi_table": "data",
    "make_demo_cohort": "data",
    "is_roi_table_name": "data.fmri",
    "check_gzip": "data.fileio",
    "atlas_image": "data.templates",
    # diagnosis and explanations
    "DiagnosisPipeline": "inference",
    "Diagnosis": "inference",
    "SubjectExplanation": "explain.subject",
    "NEAR_UNIFORM_RULE": "explain.attention",
    "MISSING_MODALITY_RULE": "missing_rule",
    "relative_map": "explain.attention",
    "paint_atlas": "explain.maps",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'anchorad_core' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
