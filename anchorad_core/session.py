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
"""
from __future__ import annotations

import gzip
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generator

from . import device as _device
from .errors import AnchorADError, CancelledError, ConfigError, InputDataError
from .modality import ALL_MODALITIES, Modality
from .progress import CancelToken, Step

if TYPE_CHECKING:
    from .data import SubjectFiles
    from .explain.attributions import RoundAttribution
    from .explain.subject import SubjectExplanation
    from .inference import DiagnosisPipeline

__all__ = [
    "Session", "Step", "CancelToken", "DiagnosisResult", "OpenedSubject", "PipelineCache", "PIPELINES",
    "pipeline_key", "read_subject", "subject_inputs", "describe_genetics", "describe_note",
    "available_devices", "dtype_supported", "DTYPES", "DEFAULT_IG_STEPS", "MAX_IG_STEPS",
]

#: The dtypes a model can run in.
DTYPES = ("float32", "bfloat16", "float16")
#: Integrated Gradients steps an explanation starts from, and the cap of their doubling.
DEFAULT_IG_STEPS = 16
MAX_IG_STEPS = 128
#: Largest genetics file read into :attr:`OpenedSubject.genetics_text`.
MAX_PREFILL_BYTES = 2_000_000

#: Stage names of the session's steps (a log prints one line per stage).
DIAGNOSIS_STAGE = "diagnosis"
EXPLANATION_STAGE = "explanation"
REPORT_STAGE = "report"

#: The editable inputs: modality value -> what the stale reason calls it.
_EDITABLE = {"clinical": "the clinical note", "genetics": "the genetics"}


# ---------------------------------------------------------------------------------------- devices
def available_devices() -> list[str]:
    """The device names offered on this machine (``auto`` first)."""
    return list(_device.available_devices())


def dtype_supported(device: str, dtype: str) -> bool:
    """Whether ``dtype`` runs on ``device`` here."""
    return bool(_device.dtype_supported(device, dtype))


# ---------------------------------------------------------------------------------------- pipelines
def pipeline_key(bundle: "str | Path", device: str, dtype: str) -> tuple[str, str, str]:
    """Cache key of a loaded model: resolved bundle folder, device name, dtype name."""
    return (str(Path(bundle).expanduser().resolve()), str(device or "auto"), str(dtype or "float32"))


class PipelineCache:
    """``(bundle, device, dtype)`` -> :class:`~anchorad_core.inference.DiagnosisPipeline`, thread-safe.

    Loading a bundle (hash check, backbones, adapters) is the slow part of a first diagnosis;
    going through subjects with one model must not pay it again.

    Parameters
    ----------
    max_size : int
        Pipelines kept at once (the least recently used is dropped first).
    """

    def __init__(self, max_size: int = 2) -> None:
        self.max_size = max_size
        self._items: dict[tuple[str, str, str], DiagnosisPipeline] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many bundles were loaded (for tests and status lines)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def get(self, bundle: "str | Path", device: str = "auto", dtype: str = "float32") -> "DiagnosisPipeline":
        """The pipeline for this key, loading the bundle on first use (may take seconds)."""
        from .inference import DiagnosisPipeline

        key = pipeline_key(bundle, device, dtype)
        with self._lock:
            if key in self._items:
                pipeline = self._items.pop(key)
                self._items[key] = pipeline  # most recently used last
                return pipeline
        pipeline = DiagnosisPipeline(key[0], device=key[1], dtype=key[2])
        with self._lock:
            self._items[key] = pipeline
            self.loads += 1
            while len(self._items) > self.max_size:
                self._items.pop(next(iter(self._items)))
        return pipeline

    def clear(self) -> None:
        """Drop every loaded pipeline."""
        with self._lock:
            self._items.clear()


#: The process-wide cache (the GUI's sessions share it).
PIPELINES = PipelineCache()


# ---------------------------------------------------------------------------------------- subject
@dataclass
class OpenedSubject:
    """A subject folder as opened: its files and their text (cheap; no preprocessing)."""

    folder: Path
    files: "SubjectFiles | None" = None  # None: not looked at (the CLI leaves it to the diagnosis)
    clinical_text: str | None = None  # the note (rendered from the structured fields when there are)
    genetics_text: str | None = None  # the genetics file as text, when it is a small text file
    genetics_note: str = ""  # why genetics_text is None although a file exists
    warnings: list[str] = field(default_factory=list)

    @property
    def subject_id(self) -> str:
        """The folder name (``sub-...``)."""
        return self.folder.name

    def has(self, modality: "Modality | str") -> bool:
        """Whether the folder has a file of ``modality`` (``True`` when the files were not looked at)."""
        return self.files is None or bool(self.files.has(Modality.parse(modality)))


def read_subject(folder: "str | Path") -> OpenedSubject:
    """Find a subject's files and read its clinical text and genetics text (no preprocessing).

    Raises
    ------
    InputDataError
        Not a folder, or no AnchorAD data in it, or an unreadable clinical file.
    """
    from .data import find_subject_files, read_clinical

    folder = Path(folder).expanduser()
    files = find_subject_files(folder)
    if not any(files.has(m) for m in ALL_MODALITIES):
        raise InputDataError(
            "not an AnchorAD subject folder: no anat/*_T1w.nii[.gz], func/, clinical/ or genetics/ files found",
            folder,
        )
    warnings = list(files.warnings)
    clinical = None
    if files.clinical_note is not None or files.clinical_json is not None or files.clinical_fields:
        clinical = read_clinical(files.clinical_note, files.clinical_json, warnings,  # a session: its table row too
                                 table_fields=files.clinical_fields, table_path=files.clinical_table)
    genetics, note = None, ""
    if files.genetics is not None:
        path = files.genetics
        if path.stat().st_size > MAX_PREFILL_BYTES:
            note = f"{path.name} is large; it is used as is (paste text to replace it)"
        else:
            try:
                raw = gzip.open(path).read() if path.name.lower().endswith(".gz") else path.read_bytes()
                genetics = raw.decode("utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                note = f"{path.name} could not be shown as text ({exc}); it is used as is"
    return OpenedSubject(folder, files, clinical, genetics, note, warnings)


def describe_genetics(text: str) -> tuple[bool, str, list[str]]:
    """Check pasted genetics text with the core parser.

    Returns
    -------
    ok : bool
    message : str
        What was understood (``APOE genotype E3/E4 -> 2 sequences of 581 bases``) or the problem.
    warnings : list of str
    """
    from .data import parse_apoe_genotype, parse_genetics_text

    stripped = (text or "").strip()
    if not stripped:
        return True, "empty: genetics will be treated as missing", []
    warnings: list[str] = []
    try:
        sequences = parse_genetics_text(stripped, warnings=warnings)
    except AnchorADError as exc:
        return False, exc.problem, warnings
    except Exception as exc:  # a parser bug must not break typing
        return False, f"{type(exc).__name__}: {exc}", warnings
    lengths = sorted({len(s) for s in sequences})
    size = f"{lengths[0]} bases" if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]} bases"
    plural = "s" if len(sequences) != 1 else ""
    if stripped.startswith(">"):
        kind = "FASTA"
    elif stripped.startswith("##fileformat=VCF") or stripped.startswith("#CHROM"):
        kind = "VCF"
    else:
        kind = "DNA"
        if len(stripped) <= 40 and re.search(r"[234]", stripped):
            try:
                genotype = parse_apoe_genotype(stripped)
                kind = f"APOE genotype {_genotype_text(genotype)}"
            except AnchorADError:
                pass
    return True, f"{kind} -> {len(sequences)} sequence{plural} of {size}", warnings


def _genotype_text(genotype: Any) -> str:
    if isinstance(genotype, (tuple, list)):
        return "/".join(f"E{str(a).lstrip('eE')}" for a in genotype)
    return str(genotype)


def describe_note(text: str) -> tuple[bool, str]:
    """Check a typed clinical note: ``(ok, "N words" or the problem)``."""
    from .data.clinical import check_note_text

    stripped = (text or "").strip()
    if not stripped:
        return True, "empty: clinical text will be treated as missing"
    try:
        check_note_text(stripped)
    except AnchorADError as exc:
        return False, exc.problem
    return True, f"{len(stripped.split())} words"


def subject_inputs(folder: "str | Path | None", overrides: "dict[str, Any] | None") -> dict[str, Any]:
    """What a diagnosis is computed from (folder and edited inputs), comparable with ``==``."""
    return {"folder": str(Path(folder).expanduser().resolve()) if folder is not None else None,
            "overrides": dict(overrides or {})}


# ---------------------------------------------------------------------------------------- results
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
        from .inference import DiagnosisPipeline

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
        if self._explanation is not None:
            return self._explanation
        yield Step(EXPLANATION_STAGE, 0, 1, "Q-former attention of every round")
        _check(cancel)
        return self._attention(result)

    def explain_round(self, anchor: "Modality | str", n_steps: int = DEFAULT_IG_STEPS, *,
                      max_steps: int = MAX_IG_STEPS,
                      cancel: CancelToken | None = None) -> Generator[Step, None, "RoundAttribution"]:
        """Integrated Gradients of one anchor round of :attr:`result`, towards the explanation's target.

        Steps start at ``n_steps`` and are doubled up to ``max_steps`` until the convergence
        bound is met. An attribution already computed with these steps is reused.
        """
        result = self._require_result()
        anchor = Modality.parse(anchor)
        explanation = self._explanation
        if explanation is None:
            yield Step(EXPLANATION_STAGE, 0, 2, "Q-former attention of every round")
            _check(cancel)
            explanation = self._attention(result)
        done = explanation.round(anchor).attribution
        if done is not None and done.requested_steps == int(n_steps):
            return done
        yield Step(EXPLANATION_STAGE, 0, 1,
                   f"Integrated Gradients of the {anchor.title} round ({int(n_steps)} steps)")
        _check(cancel)
        return self._attribute(result, explanation, anchor, n_steps, max_steps)

    def explain(self, n_steps: int = DEFAULT_IG_STEPS, max_steps: int = MAX_IG_STEPS, *,
                cancel: CancelToken | None = None) -> Generator[Step, None, "SubjectExplanation"]:
        """Attention and Integrated Gradients of every anchor round of :attr:`result` (what a report shows)."""
        result = self._require_result()
        rounds = result.diagnosis.rounds
        total = len(rounds) + 1
        explanation = self._explanation
        if explanation is None:
            yield Step(EXPLANATION_STAGE, 0, total, "Q-former attention of every round")
            _check(cancel)
            explanation = self._attention(result)
        for i, r in enumerate(rounds):
            done = explanation.round(r.anchor).attribution
            if done is not None and done.requested_steps == int(n_steps):
                continue
            yield Step(EXPLANATION_STAGE, i + 1, total, f"Integrated Gradients of the {r.anchor.title} round")
            _check(cancel)
            self._attribute(result, explanation, r.anchor, n_steps, max_steps)
        return explanation

    def _attention(self, result: DiagnosisResult) -> "SubjectExplanation":
        """Compute the attention explanation of ``result``; stored when ``result`` is still current."""
        from .explain import subject as explain_module

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

        from .explain import attributions

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
        from . import report
        from .report.writer import check_writable

        path = check_writable(path, force)
        result = self._require_result()
        explanation = self._explanation
        missing = [r.anchor for r in result.diagnosis.rounds if all_attributions
                   and (explanation is None or explanation.round(r.anchor).attribution is None)]
        total = 2 + len(missing)
        if explanation is None:
            yield Step(REPORT_STAGE, 0, total, "Q-former attention")
            _check(cancel)
            explanation = self._attention(result)
        for i, anchor in enumerate(missing):
            yield Step(REPORT_STAGE, 1 + i, total, f"Integrated Gradients of the {anchor.title} round")
            _check(cancel)
            self._attribute(result, explanation, anchor, n_steps, max_steps)
        yield Step(REPORT_STAGE, total - 1, total, "writing the PDF")
        _check(cancel)
        written: Path = report.write_report(result.diagnosis, explanation, result.subject, path,
                                            result.pipeline.bundle, force=force)
        return written
