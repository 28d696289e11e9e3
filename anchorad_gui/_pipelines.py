"""Loaded models, kept between subjects: the core session's process-wide cache (see :class:`anchorad_core.session.PipelineCache`)."""
from __future__ import annotations

from anchorad_core.session import PIPELINES, PipelineCache, pipeline_key

__all__ = ["PipelineCache", "PIPELINES", "pipeline_key"]
