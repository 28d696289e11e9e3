"""Inspect panel: look inside each anchor round of the diagnosis.

Choose the **anchor round** and the **map**:

* *Q-former attention: <modality> queries* - how the round's ``N_q`` uni-modal queries for one
  auxiliary modality spread their cross-attention over that modality's tokens (last layer,
  mean over heads), mapped back to the input: an sMRI overlay on the T1, an fMRI map painted
  on the atlas, highlighted words of the note, or a per-base DNA track; the plot shows the
  query x token matrix;
* *Q-former attention: cross-modal queries* - the share of each cross-modal query's attention
  on each auxiliary block;
* *Captum attribution* - Integrated Gradients of the round's probability of the diagnosed
  class with respect to every input (anchor and auxiliaries, through the Q-former), computed on
  demand (a few seconds to minutes on a CPU; the number of steps trades time for accuracy).

The two overlay layers (an sMRI map on the T1 and an fMRI map painted on the atlas) are reused:
switching rounds or maps updates them in place. Their names say which round and which map
they show (``AnchorAD sMRI map: fMRI round, Q-former attention (sMRI queries)``), and so does
the caption on the canvas; both are marked ``[STALE]`` once the inputs change or a later run
is cancelled. A job that fails says why here and leaves the panel usable (**Retry**).

The attention and the attributions are the core session's
(:meth:`~anchorad_core.session.Session.explain_attention`,
:meth:`~anchorad_core.session.Session.explain_round`), run in workers; this panel shows them.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from anchorad_core import NEAR_UNIFORM_RULE, Modality, relative_map
from anchorad_core.session import DEFAULT_IG_STEPS, MAX_IG_STEPS

from ._explain import MapChoice, is_explanation, map_choices
from ._map_layers import FMRI_ROLE, SMRI_ROLE, overlay_caption, roi_map_layer, volume_map_layer
from ._panel import AnchorADPanel
from ._plots import PlotCanvas
from ._style import BAD_COLOR, MUTED_COLOR, heading
from ._word_html import note_html

__all__ = ["InspectPanel"]


class InspectPanel(AnchorADPanel):
    """The Inspect dock widget (see the module docstring)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, "anchorad_inspect_panel", parent)
        self._updating = False
        self.attention_error = ""  # why reading the attention failed (empty: it did not)
        self.attention_worker: Any = None

        layout = QVBoxLayout(self)
        layout.addWidget(heading("Explain an anchor round"))
        layout.addLayout(self._choice_section())
        layout.addLayout(self._attribution_section())
        self.retry_button = QPushButton("Retry reading the attention")
        self.retry_button.setVisible(False)
        self.retry_button.clicked.connect(self.read_attention)
        layout.addWidget(self.retry_button)
        self.stale_label = self.make_stale_label()
        layout.addWidget(self.stale_label)
        self.info_label = self.rich_label()
        layout.addWidget(self.info_label)
        self.plot = PlotCanvas()
        layout.addWidget(self.plot, 3)
        layout.addWidget(heading("Clinical note"))
        layout.addWidget(self._note_section(), 1)

        self.session.diagnosis_changed.connect(self._diagnosis_changed)
        self.session.explanation_changed.connect(self._explanation_changed)
        self.session.busy_changed.connect(lambda _: self._update_buttons())
        self.session.stale_changed.connect(self._show_stale)
        self._diagnosis_changed()

    # ------------------------------------------------------------------ sections
    def _choice_section(self) -> QFormLayout:
        """Which anchor round, which map."""
        self.round_combo = QComboBox()
        self.round_combo.currentIndexChanged.connect(self._round_changed)
        self.map_combo = QComboBox()
        self.map_combo.currentIndexChanged.connect(lambda _: self.refresh())
        form = QFormLayout()
        form.addRow("Anchor round", self.round_combo)
        form.addRow("Map", self.map_combo)
        return form

    def _attribution_section(self) -> QHBoxLayout:
        """Integrated Gradients: the steps to start from, Compute and Cancel."""
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(2, 256)
        self.steps_spin.setValue(DEFAULT_IG_STEPS)
        self.steps_spin.setToolTip("Integrated Gradients steps to start from (Gauss-Legendre); doubled up to "
                                   f"{MAX_IG_STEPS} until |delta| <= 5% of |f(x) - f(baseline)|")
        self.compute_button = QPushButton("Compute attribution")
        self.compute_button.clicked.connect(self.compute_attribution)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.addWidget(QLabel("IG steps from"))
        row.addWidget(self.steps_spin)
        row.addWidget(self.compute_button, 1)
        row.addWidget(self.cancel_button)
        return row

    def _note_section(self) -> QTextEdit:
        """The clinical note, with the words a map highlights."""
        self.note_view = QTextEdit()
        self.note_view.setReadOnly(True)
        self.note_view.setMinimumHeight(70)
        self.note_view.setMaximumHeight(150)
        return self.note_view

    # ------------------------------------------------------------------ state
    @property
    def explanations(self) -> Any:
        """The session's ``SubjectExplanation`` (``None`` until the attention is read)."""
        ex = self.session.explanation
        return ex if ex is not None and is_explanation(ex) else None

    def current_anchor(self) -> str | None:
        """The anchor (modality value) of the chosen round."""
        return self.round_combo.currentData()

    def current_choice(self) -> MapChoice | None:
        """The chosen map."""
        return self.map_combo.currentData()

    def _update_buttons(self) -> None:
        choice = self.current_choice()
        running = self.worker is not None
        self.compute_button.setEnabled(
            self.session.result is not None and choice is not None and choice.kind == "attribution"
            and not running and not self.session.busy
        )
        self.cancel_button.setEnabled(running)
        self.retry_button.setVisible(bool(self.attention_error) and self.session.result is not None)
        self.retry_button.setEnabled(not self.session.busy)

    def _show_stale(self) -> None:
        self.show_stale(self.stale_label, "Run the diagnosis again.")
        self._show_caption()

    # ------------------------------------------------------------------ diagnosis -> rounds
    def _diagnosis_changed(self) -> None:
        result = self.session.result
        self._updating = True
        try:
            self.round_combo.clear()
            self.map_combo.clear()
            if result is not None:
                d = result.diagnosis
                for r in d.rounds:
                    p = r.probabilities[d.label]
                    self.round_combo.addItem(f"{r.anchor.title} anchor  (P({d.label}) = {p:.2f})", r.anchor.value)
        finally:
            self._updating = False
        self.attention_error = ""
        if result is None:
            self.session.remove_layers("overlay")
            self._show_caption()
            self.plot.clear("Run a diagnosis to inspect its anchor rounds.")
            self.note_view.setHtml("")
            self.info_label.setText("")
            self._update_buttons()
            return
        self._fill_maps()
        self.read_attention()

    def read_attention(self) -> Any:
        """Read the Q-former attention of every round of the diagnosis (in a worker); returns it."""
        result = self.session.result
        if result is None or self.attention_worker is not None:
            return None
        self.attention_error = ""
        self.info_label.setText("Reading the Q-former attention...")

        def _done(outcome: Any) -> None:
            self.attention_worker = None
            if not outcome.ok and self.session.result is result:
                self.attention_error = outcome.reason or "cancelled"
                self.plot.clear("The Q-former attention could not be read.")
                self.info_label.setText(f"<span style='color:{BAD_COLOR}'>Attention failed: "
                                        f"{_html(self.attention_error)}</span>")
            self._update_buttons()

        self.attention_worker = self.start(self.core.explain_attention, desc="AnchorAD attention",
                                           on_return=lambda ex: self._attention_ready(result, ex),
                                           on_done=_done, what="attention")
        self._update_buttons()
        return self.attention_worker

    def _attention_ready(self, result: Any, explanations: Any) -> None:
        if self.session.result is result:
            self.session.set_explanation(explanations)

    def _explanation_changed(self) -> None:
        if self.session.result is not None:
            self.refresh()

    def _round_changed(self, _index: int) -> None:
        if self._updating:
            return
        self._fill_maps()
        self.refresh()

    def _fill_maps(self) -> None:
        previous = self.current_choice()
        anchor = self.current_anchor()
        result = self.session.result
        self._updating = True
        try:
            self.map_combo.clear()
            if anchor is None or result is None:
                return
            rnd = next(r for r in result.diagnosis.rounds if r.anchor.value == anchor)
            choices = map_choices(anchor, list(rnd.auxiliaries_used))
            for c in choices:
                self.map_combo.addItem(c.label, c)
            keep = [i for i, c in enumerate(choices) if previous is not None
                    and (c.kind, c.block) == (previous.kind, previous.block)]
            self.map_combo.setCurrentIndex(keep[0] if keep else 0)
        finally:
            self._updating = False
        self._update_buttons()

    def select(self, anchor: str, kind: str = "attention", block: str = "") -> None:
        """Choose a round and a map programmatically (tests, scripts)."""
        i = self.round_combo.findData(anchor)
        if i < 0:
            raise ValueError(f"no {anchor} round in this diagnosis")
        self.round_combo.setCurrentIndex(i)
        for j in range(self.map_combo.count()):
            c = self.map_combo.itemData(j)
            if c.kind == kind and (kind == "attribution" or c.block == block):
                self.map_combo.setCurrentIndex(j)
                self.refresh()
                return
        raise ValueError(f"no {kind} map {block!r} for the {anchor} round")

    # ------------------------------------------------------------------ showing a map
    def refresh(self) -> None:
        """Show the chosen round and map (layers in place, plot, note)."""
        if self._updating:
            return
        self._update_buttons()
        result = self.session.result
        anchor, choice = self.current_anchor(), self.current_choice()
        ex = self.explanations
        if result is None or anchor is None or choice is None:
            return
        if ex is None:
            if not self.attention_error:
                self.plot.clear("Reading the attention...")
            return
        record = ex.round(anchor)
        anchor_title = Modality.parse(anchor).title
        if choice.kind == "attention":
            self._show_attention(record, choice, anchor_title)
        else:
            self._show_attribution(record, anchor_title)

    def _set_overlays(self, smri: Any = None, fmri: Any = None) -> None:
        """Show these overlays (``(data, kwargs, caption)`` each; ``None`` hides that one) and the caption."""
        self.session.layers.show_overlays({SMRI_ROLE: smri, FMRI_ROLE: fmri})
        self._show_caption()

    def _show_caption(self) -> None:
        self.session.layers.show_caption((SMRI_ROLE, FMRI_ROLE))

    def caption(self) -> str:
        """The canvas caption's text (empty when no overlay is shown)."""
        return self.session.layers.caption()

    def _note_base(self) -> tuple[int, int, int]:
        color = self.note_view.palette().base().color()
        return color.red(), color.green(), color.blue()

    def _plain_note(self, hint: str) -> None:
        subject = self.session.result.subject if self.session.result else None
        text = getattr(subject, "clinical", None)
        if not text:
            self.note_view.setHtml(f"<i style='color:{MUTED_COLOR}'>No clinical text for this subject.</i>")
            return
        import html

        self.note_view.setHtml(f"<p style='color:{MUTED_COLOR}'><i>{html.escape(hint)}</i></p>"
                               + html.escape(text).replace("\n", "<br>"))

    def _show_attention(self, record: Any, choice: MapChoice, anchor_title: str) -> None:
        block = record.attention.get(choice.block)
        if block is None:
            self._set_overlays()
            self.plot.clear("No attention for this block (the modality is missing).")
            self._plain_note("")
            return
        if choice.block == "cross":
            names = [Modality.parse(m).title for m in block.shares] if block.shares else []
            missing = [m not in record.attention for m in block.shares]  # masked blocks: no share
            shares = ", ".join(f"{n} missing" if gone else f"{n} {v:.0%}"
                               for n, v, gone in zip(names, block.shares.values(), missing))
            self._set_overlays()
            self.plot.cross_shares(block.query_shares, names, f"{anchor_title} round: cross-modal queries", missing)
            uni = block.uniformity
            line = (f"{_html(uni.figures())}: <b>{_html(uni.verdict())}</b>" if uni is not None and block.near_uniform
                    else f"{_html(uni.figures())}: <b>not uniform</b>" if uni is not None else "")
            self.info_label.setText(f"Cross-modal queries' attention per auxiliary block: {shares}.<br>{line}.")
            self._plain_note("Choose the clinical-text queries to highlight words.")
            return
        aux = Modality.parse(choice.block)
        desc = f"{anchor_title} round, {aux.title} queries (Q-former attention, weight / uniform)"
        uni = block.uniformity
        near = block.near_uniform
        vmap = relative_map(block)  # weight / uniform: 1 = uniform
        smri = fmri = None
        track = None
        map_name = f"Q-former attention ({aux.title} queries)"
        if aux is Modality.SMRI:
            caption = overlay_caption("smri", anchor_title, map_name)
            smri = (*volume_map_layer(vmap, False, desc), caption)
            where = f"overlay on the T1 (layer '{caption}')"
        elif aux is Modality.FMRI:
            fmri = (*roi_map_layer(vmap, False, desc), overlay_caption("fmri", anchor_title, map_name))
            where = "painted on the Schaefer-400 atlas"
            if not near:
                top = vmap.top(3, by_abs=False)
                where += "; top ROIs: " + ", ".join(
                    f"{str(n).replace('17Networks_', '')} ({v:.2f}x uniform)" for n, v in zip(top["name"], top["value"]))
        elif aux is Modality.CLINICAL:
            where = "words highlighted in the note below"
        else:
            track = vmap.tracks[0] if vmap.tracks else None
            where = "per-base track under the heatmap"
        self._set_overlays(smri, fmri)
        if aux is Modality.CLINICAL:
            self.note_view.setHtml(note_html(vmap, signed=False, base=self._note_base(),
                                             verdict=uni.verdict() if uni else "", near_uniform=near))
        else:
            self._plain_note("Choose the clinical-text queries to highlight words.")
        figures = uni.figures() if uni is not None else ""
        self.plot.attention_heatmap(
            block.per_query, f"{anchor_title} round: {aux.title} queries x tokens",
            f"{aux.title} token", track, "Genetics: attention per base / uniform (sequence 1)",
            n_valid=uni.n_keys if uni is not None else None, figures=figures,
        )
        if near:
            verdict = f"<b>{_html(uni.verdict())}</b>"
        elif uni is not None:
            verdict = f"<b>not uniform</b> (margin: {_html(NEAR_UNIFORM_RULE)})"
        else:
            verdict = ""
        self.info_label.setText(
            f"<b>{aux.title}</b>: {where}. Colours: weight / uniform (1 = uniform, transparent).<br>"
            f"{_html(figures)}: {verdict}.")

    def _show_attribution(self, record: Any, anchor_title: str) -> None:
        att = record.attribution
        if att is None:
            self._set_overlays()
            self.plot.clear("Press 'Compute attribution' for Integrated Gradients of this round.")
            self.info_label.setText("")
            self._plain_note("")
            return
        desc = f"{anchor_title} round, Integrated Gradients towards {att.target}"
        map_name = f"Integrated Gradients towards {att.target}"
        smri = ((*volume_map_layer(att.maps["smri"], True, desc), overlay_caption("smri", anchor_title, map_name))
                if "smri" in att.maps else None)
        fmri = ((*roi_map_layer(att.maps["fmri"], True, desc), overlay_caption("fmri", anchor_title, map_name))
                if "fmri" in att.maps else None)
        if fmri is not None and smri is not None:
            fmri[1]["visible"] = False  # one map at a time on the anatomy; the eye shows the other
        self._set_overlays(smri, fmri)
        if "clinical" in att.maps:
            self.note_view.setHtml(note_html(att.maps["clinical"], signed=True, base=self._note_base()))
        else:
            self._plain_note("")
        tracks = list(att.maps["genetics"].tracks) if "genetics" in att.maps else None
        totals = {Modality.parse(m).title: v for m, v in att.totals.items()}
        self.plot.attribution_summary(totals, f"{anchor_title} round: attribution towards {att.target}", tracks)
        conv = _html(att.convergence_text())
        if not att.converged:
            conv = f"<span style='color:{BAD_COLOR}'><b>{conv}</b></span>"
        tried = ", ".join(f"{n}: {d:+.2g}" for n, d in att.steps_tried)
        caption = getattr(att.maps.get("smri"), "caption", "")
        self.info_label.setText(
            f"Integrated Gradients ({att.n_steps} steps, {att.seconds:.0f} s): f(x) = {att.output:.3f}, "
            f"baseline {att.baseline_output:.3f}. {conv} (deltas by steps: {_html(tried)}).<br>"
            f"Red = towards {att.target}, blue = against."
            + (f" sMRI: {_html(caption)}." if caption else "")
            + (f" The fMRI map is the hidden layer '{fmri[2]}'." if smri is not None and fmri is not None else "")
        )

    # ------------------------------------------------------------------ attributions
    def compute_attribution(self) -> Any:
        """Compute Integrated Gradients of the chosen round (in a worker); returns the worker."""
        result, anchor, ex = self.session.result, self.current_anchor(), self.explanations
        if result is None or anchor is None or ex is None or self.worker is not None:
            return None
        self.info_label.setText("Computing Integrated Gradients...")

        def _ready(attribution: Any) -> None:  # the core stored it in the explanation
            if self.session.result is result and self.session.explanation is ex:
                self.session.explanation_changed.emit()

        def _done(outcome: Any) -> None:
            self.worker = None
            if outcome.cancelled:
                self.info_label.setText("Attribution cancelled.")
            elif outcome.failed:
                self.info_label.setText(f"<span style='color:{BAD_COLOR}'>Attribution failed: "
                                        f"{_html(outcome.reason)}</span>")
            self._update_buttons()

        self.worker = self.start(partial(self.core.explain_round, anchor, self.steps_spin.value()),
                                 desc="AnchorAD attribution", on_return=_ready, on_done=_done, what="attribution")
        self._update_buttons()
        return self.worker



def _html(text: str) -> str:
    import html

    return html.escape(text)
