"""Planning a paper-size run without its weights: parameters and peak memory per anchored round."""
from .plan import PAPER_PRESETS, format_plan, plan_run, presets_by_modality

__all__ = ["PAPER_PRESETS", "format_plan", "plan_run", "presets_by_modality"]
