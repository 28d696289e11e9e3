"""The report's page plan: every round's panels placed, none outside its page (no drawing, no matplotlib)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from anchorad_core.explain.attention import BlockAttention
from anchorad_core.explain.attributions import RoundAttribution
from anchorad_core.explain.maps import BaseMap, RoiMap, VolumeMap, WordMap
from anchorad_core.explain.subject import RoundExplanation, SubjectExplanation
from anchorad_core.report import layout
from anchorad_core.report.layout import Box, plan_report, round_panels

MODALITIES = ("smri", "fmri", "clinical", "genetics")
LONG_NOTE = "\n".join("Word " * 60 for _ in range(12))  # more lines than a panel may grow to


def _map(modality: str, note: str):
    if modality == "smri":
        return VolumeMap(np.zeros((4, 4, 4), np.float32), np.eye(4))
    if modality == "fmri":
        return RoiMap(np.zeros(400), np.zeros((400, 3)))
    if modality == "clinical":
        return WordMap(note, [])
    return BaseMap([np.zeros(600)], [])


def _block(name: str, note: str, n_keys: int = 8) -> BlockAttention:
    mean = np.full(n_keys, 1.0 / n_keys)
    return BlockAttention(name, mean[None].repeat(4, axis=0), mean, np.ones(n_keys, bool),
                          None if name == "cross" else _map(name, note),
                          shares={m: 1.0 / 3 for m in MODALITIES} if name == "cross" else {})


def _round(anchor: str, note: str, converged: bool = True) -> RoundExplanation:
    others = [m for m in MODALITIES if m != anchor]
    attention = {m: _block(m, note) for m in others} | {"cross": _block("cross", note, 12)}
    attribution = RoundAttribution(anchor, "AD", {m: _map(m, note) for m in MODALITIES}, {m: 0.0 for m in MODALITIES},
                                   0.7, 0.5, 1e-4, 16, 1.0, converged=converged)
    return RoundExplanation(anchor, {"NC": 0.3, "AD": 0.7}, 0.25, attention, attribution)


def _explanation(note: str = "Age: 70 years.", converged: bool = True, missing: tuple[str, ...] = ()):
    rounds = [_round(m, note, converged) for m in MODALITIES]
    return SubjectExplanation("sub-001", ["NC", "AD"], "AD", rounds, list(MODALITIES), list(missing))


def _inside(inner: Box, outer: Box) -> bool:
    eps = 1e-9
    return (inner.x >= outer.x - eps and inner.y >= outer.y - eps
            and inner.x + inner.width <= outer.x + outer.width + eps and inner.top <= outer.top + eps)


@pytest.mark.parametrize("note, converged, missing", [
    ("Age: 70 years.", True, ()),
    (LONG_NOTE, False, ("genetics",)),  # the tallest note panels under every header line
])
def test_every_round_is_placed_and_no_panel_leaves_its_page(note, converged, missing):
    explanation = _explanation(note, converged, missing)
    plan = plan_report(explanation)

    # pages numbered 2.. in order, the provenance page after the last
    assert [p.number for p in plan.round_pages] == list(range(2, 2 + len(plan.round_pages)))
    assert plan.provenance_page == plan.last_round_page + 1 == 2 + len(plan.round_pages)

    # every panel of every round placed once, in the order of its round
    for r in explanation.rounds:
        placed = [(p.source, p.block) for page in plan.round_pages if page.round is r for p in page.panels]
        assert placed == [(source, block) for source, block, _ in round_panels(r)]
        assert len(placed) == 4 + 4  # three auxiliary blocks and the cross-modal one; four IG maps

    page_area = Box(layout.MARGIN_LEFT, layout.FOOTER_RULE_Y, layout.CONTENT_WIDTH,
                    layout.HEADER_RULE_Y - layout.FOOTER_RULE_Y)
    for page in plan.round_pages:
        assert page.panels
        header = page.header
        assert layout.FOOTER_RULE_Y < header.panels_top < header.probabilities_y < layout.HEADER_RULE_Y
        previous_bottom = header.panels_top
        for panel in page.panels:
            assert _inside(panel.box, page_area), (page.number, panel.block, panel.box)
            # the title's space above the box, below the header or the panel above
            assert panel.box.top + layout.PANEL_TITLE_SPACE <= previous_bottom + 1e-9
            previous_bottom = panel.box.y
            for part in (panel.body, panel.main, panel.side):
                assert part is None or _inside(part, panel.box)
            assert (panel.side is not None) == (panel.source == "attention" and panel.block != "cross")


def test_a_note_panel_grows_with_the_note_up_to_its_cap():
    short = layout.panel_height("ig", "clinical", WordMap("Age: 70 years.", []))
    long = layout.panel_height("ig", "clinical", WordMap(LONG_NOTE, []))
    assert short == layout.WORDS_MIN_HEIGHT["ig"] < long == layout.WORDS_MAX_HEIGHT
    assert layout.panel_height("attention", "clinical", _block("clinical", "Age: 70 years.")) == \
        layout.WORDS_MIN_HEIGHT["attention"]


def test_header_lines_push_the_panels_down():
    a = _round("smri", "Age: 70 years.").attribution
    plain = layout.round_header(a, [])
    warned = layout.round_header(dataclasses.replace(a, converged=False), ["genetics"])
    assert plain.warning_y is None and plain.missing_y is None
    assert warned.warning_y is not None and warned.missing_y is not None
    assert warned.panels_top == pytest.approx(plain.panels_top - 2 * layout.ROUND_NOTE_STEP)
    assert layout.round_header(None, []).panels_top == layout.PANELS_TOP


def test_no_explanation_no_round_pages():
    plan = plan_report(None)
    assert plan.round_pages == () and plan.provenance_page == 2
