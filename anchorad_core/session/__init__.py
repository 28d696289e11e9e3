"""One subject's work, the same for the CLI and the GUI: subject, model, diagnosis, explanations, report.

A :class:`Session` holds

* the **subject**: a folder (:meth:`Session.open_subject`) and the edits of its clinical note
  and genetics text (:meth:`Session.edit_note`, :meth:`Session.edit_genetics`), which replace
  the files for the next diagnosis;
* the **model**: a bundle, device and dtype (:meth:`Session.load_bundle`); loaded pipelines are
  kept in a :class:`PipelineCache` (the GUI shares :data:`PIPELINES` between viewers);
* the last **diagnosis** (:attr:`Session.result`) and its **explanations**
  (:attr:`Session.explanation`).

The long jobs are generators that yield :class:`~anchorad_core.progress.Step` before each
stage and return their result (run one with :func:`~anchorad_core.progress.drive`, or step
through it in a worker thread): :meth:`Session.diagnose`, :meth:`Session.explain_attention`,
:meth:`Session.explain_round`, :meth:`Session.explain` and :meth:`Session.write_report`. Each
takes a :class:`~anchorad_core.progress.CancelToken`, checked between stages. A job commits
its result to the session only when it completes, so a job that is cancelled or fails (or is
simply not resumed) leaves the session as it was and never a half-written report.

**Reuse and stale results.** A diagnosis is reused by the explanation and report jobs, and an
explanation by the report, as long as nothing it was computed from changed;
:meth:`Session.stale_reasons` says what changed: another subject, the note, the genetics, the
bundle / device / dtype, or a later run of the diagnosis that was cancelled or failed. A stale
diagnosis is kept (the GUI shows it, marked stale) but is not reused.

No Qt here: ``anchorad_gui`` drives these generators in napari workers and imports from
:mod:`anchorad_core` only this module and the package's top-level names.

Modules: :mod:`.service` (the :class:`Session` and its jobs), :mod:`.subject` (a subject folder
as opened, checks of typed text), :mod:`.models` (devices, dtypes, the cache of loaded models).
"""
from __future__ import annotations

from ..progress import CancelToken, Step
from .models import DTYPES, PIPELINES, PipelineCache, available_devices, dtype_supported, pipeline_key
from .service import DEFAULT_IG_STEPS, MAX_IG_STEPS, DiagnosisResult, Session
from .subject import OpenedSubject, describe_genetics, describe_note, read_subject, subject_inputs

__all__ = [
    "Session", "Step", "CancelToken", "DiagnosisResult", "OpenedSubject", "PipelineCache", "PIPELINES",
    "pipeline_key", "read_subject", "subject_inputs", "describe_genetics", "describe_note",
    "available_devices", "dtype_supported", "DTYPES", "DEFAULT_IG_STEPS", "MAX_IG_STEPS",
]
