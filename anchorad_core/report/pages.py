"""The report's pages: the summary, each anchor round's pages, the bundle's provenance and methods.

Every page carries its title, the subject and page number, and the research-use-only statement
with the bundle in its footer (:func:`new_page`).
"""
from __future__ import annotations

import datetime as _dt
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ..explain.attention import NEAR_UNIFORM_RULE
from ..data.note_fields import note_fields_text
from ..explain.attributions import BASELINES_TEXT, DELTA_TOLERANCE, MAX_N_STEPS
from ..missing_rule import MISSING_MODALITY_RULE, MISSING_MODALITY_SHORT
from . import layout as L
from .anatomy import Anatomy
from .bundle_info import BundleInfo
from .layout import ReportPlan, RoundPagePlan, plan_report
from .panels import draw_panel
from .text import (
    DEMO_BACKBONES_NOTE, FINAL_STATEMENT, RESEARCH_USE_ONLY, TEMPLATES_NOTE, TITLES, ellipsize, rule_text, short_path,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..data.subject import Subject
    from ..explain.subject import SubjectExplanation
    from ..inference import Diagnosis

USED_COLOUR = "#1a7f37"
WARNING_COLOUR = "#a00000"
CAUTION_COLOUR = "#9a6700"
LABEL_COLOUR = "#0b3d91"
BAR_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")
MISSING_INPUT_TEXT = f"no input: {MISSING_MODALITY_SHORT}"
MISSING_RULE_WITHOUT_EXPLANATION = f"{MISSING_MODALITY_RULE}."


class _Column:
    """Text drawn top-down on one figure: ``put`` at the current height, ``down`` to the next line."""

    def __init__(self, fig: "Figure", y: float) -> None:
        self.fig = fig
        self.y = y

    def put(self, x: float, text: str, **style: Any) -> None:  # matplotlib Text properties
        self.fig.text(x, self.y, text, va="top", **style)

    def down(self, step: float) -> None:
        self.y -= step

    def lines(self, x: float, lines: list[str], step: float, **style: object) -> None:
        for line in lines:
            self.put(x, line, **style)
            self.down(step)

    def bullets(self, x: float, text: str, width: int, step: float, **style: object) -> None:
        """``text`` wrapped to ``width`` characters, its first line behind a bullet."""
        self.lines(x, [("• " if i == 0 else "  ") + line for i, line in enumerate(textwrap.wrap(text, width))],
                   step, **style)


def report_figures(diagnosis: "Diagnosis", explanation: "SubjectExplanation | None", subject: "Subject",
                   info: BundleInfo) -> Iterator["Figure"]:
    """Every page of the report, in order (the caller saves and closes each)."""
    plan = plan_report(explanation)
    yield summary_page(diagnosis, explanation, subject, info, plan)
    if explanation is not None:
        anatomy = Anatomy(explanation.t1_path, explanation.atlas)
        for page in plan.round_pages:
            yield round_page(page, diagnosis.subject_id, explanation, anatomy, info)
    yield provenance_page(diagnosis, explanation, info, plan.provenance_page)


def new_page(number: int, title: str, subject_id: str, info: BundleInfo) -> "Figure":
    """An empty A4 page with its title, subject and page number, rules and footer."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig = plt.figure(figsize=L.PAGE_SIZE)
    fig.text(L.MARGIN_LEFT, L.TITLE_Y, title, fontsize=13, weight="bold", va="top")
    fig.text(L.MARGIN_RIGHT, L.TITLE_Y, f"{subject_id} · page {number}", fontsize=8, ha="right", va="top",
             color="0.35")
    for y in (L.HEADER_RULE_Y, L.FOOTER_RULE_Y):
        fig.add_artist(Line2D([L.MARGIN_LEFT, L.MARGIN_RIGHT], [y, y], transform=fig.transFigure, color="0.6",
                              lw=0.6))
    fig.text(0.5, L.FOOTER_NOTICE_Y, RESEARCH_USE_ONLY, ha="center", va="center", fontsize=8.5, weight="bold",
             color=WARNING_COLOUR)
    bundle_name = Path(info.path if info.path is not None else "?").name
    fig.text(0.5, L.FOOTER_BUNDLE_Y, f"AnchorAD · bundle {bundle_name} ({(info.hash or '')[:12]}) · "
             f"generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}", ha="center", va="center", fontsize=6.5,
             color="0.4")
    return fig


# ---------------------------------------------------------------------------- summary
def summary_page(diagnosis: "Diagnosis", explanation: "SubjectExplanation | None", subject: "Subject",
                 info: BundleInfo, plan: ReportPlan) -> "Figure":
    """Page 1: the subject, its inputs (used / missing), the diagnosis with its table and chart."""
    d = diagnosis
    fig = new_page(1, f"AnchorAD diagnosis report — {d.subject_id}", d.subject_id, info)
    col = _Column(fig, L.SUMMARY_TOP)
    rows = [("Subject", d.subject_id)]
    if getattr(subject, "folder", None):
        rows.append(("Folder", str(subject.folder)))
    rows.append(("Task", " vs ".join(d.labels) + (f"  ({info.task})" if info.task else "")))
    for key, value in rows:
        col.put(L.MARGIN_LEFT, f"{key}:", weight="bold")
        col.put(L.SUMMARY_VALUE_X, ellipsize(value, L.WRAP_SUMMARY_VALUE))
        col.down(L.ROW_STEP)
    col.down(L.GAP)
    _inputs(col, d, explanation, subject)
    col.down(L.GAP_LARGE)
    _diagnosis(col, d)
    col.down(L.GAP)
    col.y = _probability_table(fig, d, col.y)
    _probability_chart(fig, d, col.y)
    if explanation is not None:
        _explanations_footnote(fig, explanation, plan)
    return fig


def _inputs(col: _Column, d: "Diagnosis", explanation: "SubjectExplanation | None", subject: "Subject") -> None:
    col.put(L.MARGIN_LEFT, "Inputs", fontsize=10.5, weight="bold")
    col.down(L.HEADING_STEP)
    sources = {getattr(k, "value", k): v for k, v in (getattr(subject, "sources", {}) or {}).items()}
    for m in L.MODALITY_ORDER:
        used = m in d.modalities_used
        col.put(L.INDENT_X, "used" if used else "MISSING", color=USED_COLOUR if used else WARNING_COLOUR,
                weight="bold")
        col.put(L.SUMMARY_VALUE_X, TITLES[m])
        src = sources.get(m, "") if used else MISSING_INPUT_TEXT
        col.put(L.SUMMARY_SOURCE_X, ellipsize(short_path(src), L.WRAP_SOURCE), fontsize=7.5, color="0.25")
        col.down(L.ROW_STEP)
    col.down(L.GAP_SMALL)
    rule = "Missing-modality rule: " + (explanation.missing_rule if explanation is not None
                                        else MISSING_RULE_WITHOUT_EXPLANATION)
    col.lines(L.INDENT_X, textwrap.wrap(rule, L.WRAP_NOTE), L.NOTE_STEP, fontsize=7.5, style="italic")
    for warning in (getattr(subject, "warnings", None) or [])[:4]:
        col.put(L.INDENT_X, ellipsize("warning: " + warning, L.WRAP_WARNING), fontsize=7.5, color=CAUTION_COLOUR)
        col.down(L.NOTE_STEP)


def _diagnosis(col: _Column, d: "Diagnosis") -> None:
    col.put(L.MARGIN_LEFT, "Diagnosis", fontsize=10.5, weight="bold")
    col.down(L.DIAGNOSIS_HEADING_STEP)
    col.put(L.INDENT_X, f"{d.label}", fontsize=16, weight="bold", color=LABEL_COLOUR)
    col.fig.text(L.SUMMARY_LABEL_DETAIL_X, col.y - L.LABEL_DETAIL_DROP, f"aggregate probability {d.confidence:.3f}"
                 "   ·   " + "   ".join(f"p({k}) = {v:.3f}" for k, v in d.aggregate_probabilities.items()), va="top")
    col.down(L.DIAGNOSIS_LABEL_STEP)
    reason = f" Chosen: {d.rule_reason}." if getattr(d, "rule_reason", "") else ""
    col.lines(L.INDENT_X, textwrap.wrap(f"Aggregation rule: {rule_text(d.rule)}{reason}", L.WRAP_NOTE), L.NOTE_STEP,
              fontsize=7.5)


def _probability_table(fig: "Figure", d: "Diagnosis", top: float) -> float:
    """The per-round table hanging from ``top``; returns the height under it for the chart."""
    rows = [[TITLES[r.anchor.value]] + [f"{r.probabilities[l]:.3f}" for l in d.labels] + [f"{r.weight:.3f}"]
            for r in d.rounds]
    rows.append(["aggregate"] + [f"{d.aggregate_probabilities[l]:.3f}" for l in d.labels] + ["—"])
    box = L.summary_table_box(top, len(rows))
    ax = fig.add_axes(box)
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=["anchor round"] + [f"p({l})" for l in d.labels] + ["weight"],
                     loc="upper center", cellLoc="center", colLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8.5)
    table.scale(1, 1.35)
    for (r, _), cell in table.get_celld().items():
        if r == 0 or r == len(rows):
            cell.set_text_props(weight="bold")
    return top - (box.height + L.TABLE_GAP_BELOW)


def _probability_chart(fig: "Figure", d: "Diagnosis", top: float) -> None:
    ax = fig.add_axes(L.summary_chart_box(top))
    names = [TITLES[r.anchor.value] for r in d.rounds] + ["aggregate"]
    x = np.arange(len(names))
    width = 0.8 / max(1, len(d.labels))
    for i, label in enumerate(d.labels):
        vals = [r.probabilities[label] for r in d.rounds] + [d.aggregate_probabilities[label]]
        ax.bar(x + (i - (len(d.labels) - 1) / 2) * width, vals, width, label=f"p({label})",
               color=BAR_COLOURS[i % len(BAR_COLOURS)])
    for i, r in enumerate(d.rounds):
        ax.text(i, 1.02, f"w={r.weight:.2f}", ha="center", fontsize=7)
    ax.axhline(0.5, color="0.5", lw=0.7, ls="--")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("probability")
    ax.set_title("Per-round and aggregated probabilities (w = aggregation weight)")
    ax.legend(loc="upper right", ncol=len(d.labels), bbox_to_anchor=(1.0, 1.0), frameon=False)


def _explanations_footnote(fig: "Figure", e: "SubjectExplanation", plan: ReportPlan) -> None:
    atts = [r.attribution for r in e.rounds if r.attribution is not None]
    steps = "/".join(str(a.n_steps) for a in atts) or str(e.n_steps)
    converged = all(a.converged for a in atts)
    fig.text(L.MARGIN_LEFT, L.FOOTNOTE_Y, textwrap.fill(
        f"Explanations: attention = Q-former cross-attention; attributions = Integrated Gradients of "
        f"p({e.target}) per round, {steps} steps (|delta| ≤ {DELTA_TOLERANCE:.0%} of |f(x) − f(baseline)| "
        f"{'met in every round' if converged else 'NOT met in every round'}). "
        f"Pages 2–{plan.last_round_page}.", L.WRAP_FOOTNOTE),
        fontsize=7.5, va="top", color="0.3" if converged else WARNING_COLOUR)


# ---------------------------------------------------------------------------- rounds
def round_page(page: RoundPagePlan, subject_id: str, explanation: "SubjectExplanation", anatomy: Anatomy,
               info: BundleInfo) -> "Figure":
    """One page of an anchor round: its probabilities, IG convergence, missing modalities and panels."""
    r, header = page.round, page.header
    a = r.attribution
    fig = new_page(page.number, f"Anchor round: {TITLES[r.anchor]}", subject_id, info)
    probs = "  ".join(f"p({k})={v:.3f}" for k, v in r.probabilities.items())
    fig.text(L.MARGIN_LEFT, header.probabilities_y, f"{probs}   weight {r.weight:.3f}", fontsize=8, va="top",
             color="0.2")
    if a is not None and header.attribution_y is not None:
        ig = (f"IG of p({a.target}): f(x)={a.output:.3f}, f(x')={a.baseline_output:.3f} (x' = baseline), "
              f"delta={a.delta:+.1e} = {a.relative_delta:.1%} of |f(x) − f(x')| at {a.n_steps} steps; "
              f"bound {a.tolerance:.0%} {'met' if a.converged else 'NOT MET'}")
        fig.text(L.MARGIN_LEFT, header.attribution_y, ig, fontsize=8, va="top",
                 color="0.2" if a.converged else WARNING_COLOUR)
    if a is not None and header.warning_y is not None:
        fig.text(L.MARGIN_LEFT, header.warning_y, ellipsize(a.warning, L.WRAP_ROUND_WARNING), fontsize=7, va="top",
                 color=WARNING_COLOUR, weight="bold")
    missing = explanation.modalities_missing
    if header.missing_y is not None:
        fig.text(L.MARGIN_LEFT, header.missing_y, "Missing (masked, no map): " + ", ".join(TITLES[m] for m in missing),
                 fontsize=8, va="top", color=WARNING_COLOUR)
    for panel in page.panels:
        draw_panel(fig, panel, r, anatomy, missing)
    return fig


# ---------------------------------------------------------------------------- provenance
def provenance_page(diagnosis: "Diagnosis", explanation: "SubjectExplanation | None", info: BundleInfo,
                    number: int) -> "Figure":
    """The last page: the bundle, what is real and what is synthetic, the methods."""
    fig = new_page(number, "Model bundle and provenance", diagnosis.subject_id, info)
    col = _Column(fig, L.PROVENANCE_TOP)
    for key, value in _bundle_rows(diagnosis, info):
        col.put(L.MARGIN_LEFT, key + ":", weight="bold")
        col.lines(L.PROVENANCE_VALUE_X, textwrap.wrap(value, L.WRAP_PROVENANCE_VALUE) or [""], L.PROVENANCE_ROW_STEP,
                  family="monospace" if key.startswith("Content") else None, fontsize=8)
        col.down(L.PROVENANCE_ROW_GAP)
    col.down(L.GAP_LARGE)
    col.put(L.MARGIN_LEFT, "What is real and what is synthetic", fontsize=10.5, weight="bold")
    col.down(L.PROVENANCE_HEADING_STEP)
    for note in _provenance_notes(info):
        col.bullets(L.INDENT_X, note, L.WRAP_PROVENANCE_NOTE, L.PROVENANCE_ROW_STEP)
        col.down(L.PROVENANCE_NOTE_GAP)
    col.down(L.GAP_LARGE)
    col.put(L.MARGIN_LEFT, "Methods", fontsize=10.5, weight="bold")
    col.down(L.PROVENANCE_HEADING_STEP)
    for note in _methods(diagnosis, explanation):
        col.bullets(L.INDENT_X, note, L.WRAP_METHODS, L.METHODS_STEP, fontsize=9.5)
        col.down(L.METHODS_GAP)
    col.down(L.STATEMENT_GAP)
    col.lines(L.MARGIN_LEFT, textwrap.wrap(FINAL_STATEMENT, L.WRAP_STATEMENT), L.STATEMENT_STEP, fontsize=9.5,
              weight="bold", color=WARNING_COLOUR)
    return fig


def _bundle_rows(diagnosis: "Diagnosis", info: BundleInfo) -> list[tuple[str, str]]:
    prov = info.provenance
    backbones = ", ".join(f"{TITLES.get(m, m)}: {f}" for m, f in info.backbones.items())
    synthetic = ("YES — the training subjects are synthetic" if prov.get("synthetic_data") else
                 ("no (as declared by the bundle)" if "synthetic_data" in prov else "unspecified"))
    rows = [
        ("Bundle", _known(info.path)),
        ("Format version", _known(info.format_version)),
        ("Content hash (SHA-256)", _known(info.hash)),
        ("Created", str(info.created or "?")),
        ("AnchorAD version", str(info.anchorad_version or "?")),
        ("Task / labels", f"{info.task or '?'} / {', '.join(diagnosis.labels)}"),
        ("Training subjects", str(info.training_subjects or "?")),
        ("Backbones", backbones or "?"),
        ("Training data", str(prov.get("training_data", "unspecified"))),
        ("Synthetic data", synthetic),
    ]
    if info.note_fields:  # what the training notes held (bundles that record it)
        rows.insert(7, ("Clinical notes", note_fields_text(info.note_fields)))
    return rows


def _known(value: object) -> str:
    return "?" if value is None else str(value)


def _provenance_notes(info: BundleInfo) -> list[str]:
    prov = info.provenance
    notes = list(prov.get("notes") or [])
    if prov.get("synthetic_data") or "demo" in str(prov.get("training_data", "")).lower():
        notes.append(DEMO_BACKBONES_NOTE)
    notes.append(TEMPLATES_NOTE)
    return notes


def _methods(diagnosis: "Diagnosis", e: "SubjectExplanation | None") -> list[str]:
    methods = [
        "Modality-anchored interaction: each present modality is an anchor in turn; the other modalities' "
        "frozen phase-1 features pass a modality-aware Q-former whose output is appended to the anchor's "
        "input tokens (LoRA-adapted anchor). Round probabilities are aggregated: " + rule_text(diagnosis.rule),
        "Attention maps: last-layer Q-former cross-attention, mean over heads and queries (each query row sums "
        "to 1 over its keys), mapped to T1 voxels (UniFormer token grid → cube → native T1 grid), atlas ROIs "
        "(sum over time patches), words of the note and bases of the sequences.",
    ]
    if e is not None:
        methods.append(
            f"Attention uniformity per block over its n valid keys: normalised entropy H/log(n) and max/uniform "
            f"(max weight × n); near uniform ({NEAR_UNIFORM_RULE}): no top items listed. Colours: weight / uniform.")
        methods.append(
            f"Attributions: Captum LayerIntegratedGradients of the round's p({e.target}) (Gauss-Legendre; steps "
            f"doubled from {e.n_steps} up to {MAX_N_STEPS} until |delta| ≤ {DELTA_TOLERANCE:.0%} of "
            f"|f(x) − f(baseline)|, delta = sum of attributions − (f(x) − f(baseline)), per round); "
            f"{BASELINES_TEXT}; "
            "auxiliaries through the Q-former with their phase-1 backbones. sMRI maps: brain only, per Schaefer-400 "
            "parcel or smoothed (see captions).")
        methods.append("Explanation time: " + ", ".join(f"{k} {v:.1f} s" for k, v in e.timings.items()))
    methods.append("Attention and attributions describe what the model used, not disease biology; they are "
                   "not validated as biomarkers.")
    return methods
