"""The :class:`Session`: a subject, a model, the diagnosis and its explanations, and the jobs on them.

See :mod:`anchorad_core.session` for the whole picture (reuse, stale rules, cancelling).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generator

from ..errors import CancelledError, ConfigError, InputDataError
from ..modality import ALL_MODALITIES, Modality
from ..progress import CancelToken, Step
from .models import PipelineCache, pipeline_key
from .subject import OpenedSubject, describe_genetics, read_subject, subject_inputs

if TYPE_CHECKING:
    from ..explain.attributions import RoundAttribution
    from ..explain.subject import SubjectExplanation
    from ..inference import DiagnosisPipeline

__all__ = ["Session", "DiagnosisResult", "DEFAULT_IG_STEPS", "MAX_IG_STEPS"]

#: Integrated Gradients steps an explanation starts from, and the cap of their doubling.
DEFAULT_IG_STEPS = 16
MAX_IG_STEPS = 128

#: Stage names of the session's steps (a log prints one line per stage).
DIAGNOSIS_STAGE = "diagnosis"
EXPLANATION_STAGE = "explanation"
REPORT_STAGE = "report"

#: The editable inputs: modality value -> what the stale reason calls it.
_EDITABLE = {"clinical": "the clinical note", "genetics": "the genetics"}


@dataclass
class DiagnosisResult:
    """A finished diagnosis and what produced it."""

    pipeline: "DiagnosisPipeline"
    subject: Any  # anchorad_core.data.Subject: the preprocessed inputs (with the T1 geometry)
    diagnosis: Any  # anchorad_core.inference.Diagnosis
    key: tuple[str, str, str]  # bundle, device, dtype (pipeline_key)
    seconds: float = 0.0
    #: what it was computed from (:func:`subject_inputs`)
    inputs: dict[str, Any] = field(default_factory=dict)


def _check(cancel: "CancelToken | None") -> None:
    if cancel is not None:
        cancel.check()


class Session:
    """A subject, a model, the diagnosis and its explanations (see the module docstring).

    Parameters
    ----------
    cache : PipelineCache, optional
        Where loaded models are kept (the GUI passes :data:`PIPELINES`); without one the
        session loads its own model, from the bundle path exactly as given (the CLI).
    """

    def __init__(self, cache: "PipelineCache | None" = None) -> None:
        self.cache = cache
        self.subject: OpenedSubject | None = None
        self._overrides: dict[str, str | None] = {}
        self._bundle: tuple[str, str, str] | None = None  # (path as given, device, dtype)
        self._pipeline: "DiagnosisPipeline | None" = None  # loaded without a cache, or given
        self._pipeline_key: tuple[str, str, str] | None = None
        self._result: DiagnosisResult | None = None
        self._explanation: "SubjectExplanation | None" = None
        self._later_run = ""  # "cancelled" / "failed": a diagnosis after the result did not finish
        self._read: tuple[dict[str, Any], tuple[str, str, str], Any] | None = None  # read_inputs()

    # ------------------------------------------------------------------ subject
    def open_subject(self, folder: "str | Path", *, preview: bool = True) -> OpenedSubject:
        """Make ``folder`` the subject (edits and results cleared); returns it.

        ``preview`` reads the files' text now (:func:`read_subject`; the GUI shows it);
        ``False`` only records the folder, whose inputs the diagnosis reads (the CLI).
        """
        opened = read_subject(folder) if preview else OpenedSubject(Path(folder))
        self.set_subject(opened)
        return opened

    def set_subject(self, opened: OpenedSubject | None) -> None:
        """Make an already read subject current (``None``: none); edits and results are cleared."""
        self.subject = opened
        self._overrides = {}
        self._read = None
        self.set_result(None)

    @property
    def folder(self) -> Path | None:
        """The subject folder."""
        return self.subject.folder if self.subject is not None else None

    def edit_note(self, text: str) -> None:
        """The note as typed: replaces the files unless it is their text; empty = no clinical input."""
        original = (self.subject.clinical_text or "").strip() if self.subject is not None else ""
        if self.subject is not None and (text or "").strip() == original:
            self._overrides.pop("clinical", None)
        else:
            self.set_override("clinical", (text or "").strip() or None)

    def edit_genetics(self, text: str) -> None:
        """The genetics as typed: replaces the file unless it is its text; empty = no genetics.

        A file too large to show (no :attr:`OpenedSubject.genetics_text`) is kept while the box
        stays empty.
        """
        state = self.subject
        stripped = (text or "").strip()
        kept = state is not None and (
            stripped == (state.genetics_text or "").strip()
            or (state.genetics_text is None and state.files is not None and state.files.genetics is not None
                and not stripped))
        if kept:
            self._overrides.pop("genetics", None)
        else:
            self.set_override("genetics", stripped or None)

    def set_override(self, modality: "Modality | str", value: "str | None") -> None:
        """Replace ``modality``'s file by ``value`` (text, used as given; ``None``: the modality is missing)."""
        self._overrides[Modality.parse(modality).value] = value

    def reset_inputs(self) -> None:
        """Back to the subject's files."""
        self._overrides = {}

    def edited(self, modality: "Modality | str") -> bool:
        """Whether ``modality``'s input was edited (replaces the file)."""
        return Modality.parse(modality).value in self._overrides

    def overrides(self) -> dict[str, Any]:
        """The edited inputs, as ``DiagnosisPipeline.load_subject`` takes them (``None``: missing)."""
        return dict(self._overrides)

    def current_inputs(self) -> dict[str, Any]:
        """What a diagnosis run now would be computed from (:func:`subject_inputs`)."""
        return subject_inputs(self.folder, self.overrides())

    def input_problem(self) -> str:
        """Why the edited inputs cannot be used (empty: they can)."""
        genetics = self._overrides.get("genetics")
        if genetics:
            ok, message, _ = describe_genetics(genetics)
            if not ok:
                return f"genetics box: {message}"
        return ""

    # ------------------------------------------------------------------ model
    def select_bundle(self, path: "str | Path", device: str = "auto", dtype: str = "float32") -> None:
        """Choose the model for the next diagnosis (loaded by it; see :meth:`load_bundle`)."""
        choice = (str(path), str(device or "auto"), str(dtype or "float32"))
        if choice != self._bundle:
            self._bundle = choice
            self._pipeline = None
            self._pipeline_key = None

    def load_bundle(self, path: "str | Path", device: str = "auto", dtype: str = "float32") -> "DiagnosisPipeline":
        """Choose the model and load it now (errors in the bundle are raised here)."""
        self.select_bundle(path, device, dtype)
        return self.pipeline()

    def use_pipeline(self, pipeline: "DiagnosisPipeline", device: str | None = None, dtype: str | None = None) -> None:
        """Use an already loaded pipeline as the model."""
        dtype_name = dtype or str(pipeline.dtype).removeprefix("torch.")
        self._bundle = (str(pipeline.bundle.path), device or str(pipeline.device), dtype_name)
        self._pipeline = pipeline
        self._pipeline_key = None

    @property
    def bundle_key(self) -> tuple[str, str, str] | None:
        """The chosen model as :func:`pipeline_key` (``None`` until one is chosen)."""
        if self._bundle is None:
            return None
        if self._pipeline_key is None:
            self._pipeline_key = pipeline_key(*self._bundle)
        return self._pipeline_key

    def model_loaded(self) -> bool:
        """Whether the chosen model is loaded (a diagnosis will not wait for it)."""
        if self._pipeline is not None:
            return True
        return self.cache is not None and self.bundle_key is not None and self.bundle_key in self.cache

    def pipeline(self) -> "DiagnosisPipeline":
        """The chosen model, loaded on first use."""
        from ..inference import DiagnosisPipeline

        if self._bundle is None:
            raise ConfigError("choose a model bundle first")
        if self._pipeline is not None:
            return self._pipeline
        if self.cache is not None:
            return self.cache.get(*self._bundle)
        self._pipeline = DiagnosisPipeline(self._bundle[0], device=self._bundle[1], dtype=self._bundle[2])
        return self._pipeline

    def read_inputs(self) -> Any:
        """Read and preprocess the subject's inputs for the chosen model now; returns the ``Subject``.

        Errors in the inputs are raised here, before any progress is reported (the CLI prints
        one line for them); the next :meth:`diagnose` of the same inputs uses what was read.
        """
        if self.folder is None:
            raise InputDataError("open a subject folder first")
        pipeline = self.pipeline()
        inputs = self.current_inputs()
        subject = pipeline.load_subject(self.folder, overrides=self.overrides() or None)
        key = self.bundle_key
        assert key is not None  # pipeline() raised otherwise
        self._read = (inputs, key, subject)
        return subject

    # ------------------------------------------------------------------ results and staleness
    @property
    def result(self) -> DiagnosisResult | None:
        """The last finished diagnosis (possibly stale: :meth:`stale_reasons`)."""
        return self._result

    @property
    def explanation(self) -> "SubjectExplanation | None":
        """The explanations of :attr:`result` computed so far (``None``: none yet)."""
        return self._explanation

    def set_result(self, result: DiagnosisResult | None) -> None:
        """Make ``result`` the diagnosis (its explanations and the stale marks are cleared)."""
        self._result = result
        self._explanation = None
        self._later_run = ""

    def set_explanation(self, explanation: "SubjectExplanation | None") -> None:
        """Store explanations computed for :attr:`result`."""
        self._explanation = explanation

    def stale_reasons(self) -> list[str]:
        """Why :attr:`result` no longer matches the inputs and model (empty: it does, or there is none)."""
        result = self._result
        if result is None:
            return []
        reasons = []
        was, now = result.inputs or {}, self.current_inputs()
        if was.get("folder") not in (None, now["folder"]):
            reasons.append("another subject is open")
        before, after = was.get("overrides", {}), now["overrides"]
        for key, what in _EDITABLE.items():
            if before.get(key, ...) != after.get(key, ...):
                reasons.append(f"{what} changed after this diagnosis")
        if self.bundle_key is not None and result.key != self.bundle_key:
            reasons.append("the model (bundle, device or dtype) changed after this diagnosis")
        if self._later_run:
            reasons.append(f"a later run was {self._later_run}")
        return reasons

    @property
    def stale(self) -> bool:
        """Whether :meth:`stale_reasons` has any."""
        return bool(self.stale_reasons())

    def mark_stale(self, why: str) -> None:
        """A diagnosis run after :attr:`result` was ``why`` (``"cancelled"`` / ``"failed"``)."""
        if self._result is not None:
            self._later_run = why

    def _fresh_result(self, outputs: bool = True) -> DiagnosisResult | None:
        result = self._result
        if result is None or self.stale or (outputs and not result.diagnosis.features):
            return None
        return result

    def _require_result(self) -> DiagnosisResult:
        if self._result is None:
            raise InputDataError("run a diagnosis first")
        return self._result

    # ------------------------------------------------------------------ diagnosis
    def diagnose(self, *, reuse: bool = True, outputs: bool = True,
                 cancel: CancelToken | None = None) -> Generator[Step, None, DiagnosisResult]:
        """Load the model if needed, read the subject, run every stage; returns the result.

        Parameters
        ----------
        reuse : bool
            Return the current result at once when it is not stale (default).
        outputs : bool
            Keep the rounds' outputs and inputs (what the explanations need; default).
        cancel : CancelToken, optional
            Checked between stages. A diagnosis that is cancelled or fails leaves the earlier
            result, marked stale (``a later run was cancelled``).
        """
        fresh = self._fresh_result(outputs) if reuse else None
        if fresh is not None:
            return fresh
        folder = self.folder
        if folder is None:
            raise InputDataError("open a subject folder first")
        overrides = self.overrides()
        inputs = subject_inputs(folder, overrides)
        key = self.bundle_key
        if key is None:
            raise ConfigError("choose a model bundle first")
        extra = 2
        total = extra + 2 * self._n_present(overrides) + 1
        start = time.perf_counter()
        try:
            yield Step(DIAGNOSIS_STAGE, 0, total, "model loaded" if self.model_loaded() else "loading the model")
            _check(cancel)
            pipeline = self.pipeline()
            yield Step(DIAGNOSIS_STAGE, 1, total, "reading the subject")
            _check(cancel)
            read, self._read = self._read, None
            if read is not None and read[0] == inputs and read[1] == key:
                subject = read[2]
            else:
                subject = pipeline.load_subject(folder, overrides=overrides or None)
            runner = pipeline.run(subject, return_outputs=outputs)
            while True:
                try:
                    step = next(runner)
                except StopIteration as finished:
                    diagnosis = finished.value
                    break
                yield Step(step.name, step.done + extra, step.total + extra, step.message)
                _check(cancel)
        except CancelledError:
            self.mark_stale("cancelled")
            raise
        except Exception:
            self.mark_stale("failed")
            raise
        result = DiagnosisResult(pipeline, subject, diagnosis, key, time.perf_counter() - start, inputs)
        if self.current_inputs()["folder"] == inputs["folder"]:  # the subject is still open: commit
            self.set_result(result)
        return result

    def _n_present(self, overrides: dict[str, Any]) -> int:
        state = self.subject
        n = 0
        for m in ALL_MODALITIES:
            if m.value in overrides:
                n += overrides[m.value] is not None
            else:
                n += state is None or state.has(m)
        return n

    # ------------------------------------------------------------------ explanations
    def explain_attention(self, *, cancel: CancelToken | None = None) -> Generator[Step, None, "SubjectExplanation"]:
        """The Q-former attention of every anchor round of :attr:`result` (a fraction of a second)."""
        result = self._require_result()
        return (yield from self._attention_step(result, EXPLANATION_STAGE, 1, cancel))

    def explain_round(self, anchor: "Modality | str", n_steps: int = DEFAULT_IG_STEPS, *,
                      max_steps: int = MAX_IG_STEPS,
                      cancel: CancelToken | None = None) -> Generator[Step, None, "RoundAttribution"]:
        """Integrated Gradients of one anchor round of :attr:`result`, towards the explanation's target.

        Steps start at ``n_steps`` and are doubled up to ``max_steps`` until the convergence
        bound is met. An attribution already computed with these steps is reused.
        """
        result = self._require_result()
        anchor = Modality.parse(anchor)
        total = 1 if self._explanation is not None else 2
        explanation = yield from self._attention_step(result, EXPLANATION_STAGE, total, cancel)
        done = explanation.round(anchor).attribution
        if done is not None and done.requested_steps == int(n_steps):
            return done
        yield Step(EXPLANATION_STAGE, total - 1, total,
                   f"Integrated Gradients of the {anchor.title} round ({int(n_steps)} steps)")
        _check(cancel)
        return self._attribute(result, explanation, anchor, n_steps, max_steps)

    def explain(self, n_steps: int = DEFAULT_IG_STEPS, max_steps: int = MAX_IG_STEPS, *,
                cancel: CancelToken | None = None) -> Generator[Step, None, "SubjectExplanation"]:
        """Attention and Integrated Gradients of every anchor round of :attr:`result` (what a report shows)."""
        result = self._require_result()
        rounds = result.diagnosis.rounds
        total = len(rounds) + 1
        explanation = yield from self._attention_step(result, EXPLANATION_STAGE, total, cancel)
        for i, r in enumerate(rounds):
            done = explanation.round(r.anchor).attribution
            if done is not None and done.requested_steps == int(n_steps):
                continue
            yield Step(EXPLANATION_STAGE, i + 1, total, f"Integrated Gradients of the {r.anchor.title} round")
            _check(cancel)
            self._attribute(result, explanation, r.anchor, n_steps, max_steps)
        return explanation

    def _attention_step(self, result: DiagnosisResult, stage: str, total: int, cancel: CancelToken | None,
                        message: str = "Q-former attention of every round",
                        ) -> Generator[Step, None, "SubjectExplanation"]:
        """The explanation of ``result`` so far, its attention computed first (step 0 of ``total``) if it has none."""
        if self._explanation is not None:
            return self._explanation
        yield Step(stage, 0, total, message)
        _check(cancel)
        return self._attention(result)

    def _attention(self, result: DiagnosisResult) -> "SubjectExplanation":
        """Compute the attention explanation of ``result``; stored when ``result`` is still current."""
        from ..explain import subject as explain_module

        diagnosis, explanation = explain_module.explain_subject(result.pipeline, result.subject, attributions=False,
                                                                diagnosis=result.diagnosis)
        if not result.diagnosis.features:  # diagnosed with outputs=False: keep the re-run that has them
            result.diagnosis = diagnosis
        if self._result is result and self._explanation is None:
            self._explanation = explanation
        return explanation

    def _attribute(self, result: DiagnosisResult, explanation: "SubjectExplanation", anchor: Modality,
                   n_steps: int, max_steps: int) -> "RoundAttribution":
        """The one Integrated Gradients call of the session; stored when ``explanation`` is still current."""
        import torch

        from ..explain import attributions

        d = result.diagnosis
        labels = list(d.labels)
        torch.manual_seed(0)
        attribution = attributions.round_attributions(
            result.pipeline.model, anchor, result.subject, d.features,
            target=labels.index(explanation.target), labels=labels, n_steps=int(n_steps),
            max_steps=int(max_steps),
        )
        if self._explanation is explanation:
            record = explanation.round(anchor)
            record.attribution = attribution
            record.seconds += attribution.seconds
            explanation.timings[f"round.{anchor.value}"] = record.seconds
            explanation.n_steps = int(attribution.requested_steps or attribution.n_steps)
        return attribution

    # ------------------------------------------------------------------ report
    def write_report(self, path: "str | Path", *, force: bool = False, all_attributions: bool = False,
                     n_steps: int = DEFAULT_IG_STEPS, max_steps: int = MAX_IG_STEPS,
                     cancel: CancelToken | None = None) -> Generator[Step, None, Path]:
        """Write the PDF report of :attr:`result` with the explanations computed so far.

        The attention is computed if it was not, and with ``all_attributions`` the Integrated
        Gradients of every round that has none. The PDF is written last, in one go, to a
        temporary name that is renamed: a cancelled or failed report leaves no file.
        Raises :class:`~anchorad_core.report.ReportExistsError` at once if ``path`` exists
        and ``force`` is false.
        """
        from .. import report
        from ..report.writer import check_writable

        path = check_writable(path, force)
        result = self._require_result()
        explanation = self._explanation
        missing = [r.anchor for r in result.diagnosis.rounds if all_attributions
                   and (explanation is None or explanation.round(r.anchor).attribution is None)]
        total = 2 + len(missing)
        explanation = yield from self._attention_step(result, REPORT_STAGE, total, cancel, "Q-former attention")
        for i, anchor in enumerate(missing):
            yield Step(REPORT_STAGE, 1 + i, total, f"Integrated Gradients of the {anchor.title} round")
            _check(cancel)
            self._attribute(result, explanation, anchor, n_steps, max_steps)
        yield Step(REPORT_STAGE, total - 1, total, "writing the PDF")
        _check(cancel)
        written: Path = report.write_report(result.diagnosis, explanation, result.subject, path,
                                            result.pipeline.bundle, force=force)
        return written
