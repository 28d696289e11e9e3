"""Where everything goes on the report's pages: named geometry and the plan of the round pages.

Coordinates are figure fractions of an A4 portrait page (0 = bottom / left, 1 = top / right).
:func:`plan_report` decides, without drawing anything (no matplotlib), which panels each anchor
round gets, how tall each is, how they are split over pages and the box of every panel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, Sequence, Union

from ..modality import Modality

if TYPE_CHECKING:
    from ..explain.attention import BlockAttention
    from ..explain.attributions import RoundAttribution
    from ..explain.maps import ModalityMap
    from ..explain.subject import RoundExplanation, SubjectExplanation

# ---------------------------------------------------------------------------- every page
PAGE_SIZE = (8.27, 11.69)  # A4 portrait, inches
MARGIN_LEFT = 0.06
MARGIN_RIGHT = 0.94
CONTENT_WIDTH = 0.88  # MARGIN_RIGHT - MARGIN_LEFT
TITLE_Y = 0.965
HEADER_RULE_Y = 0.945
FOOTER_RULE_Y = 0.040
FOOTER_NOTICE_Y = 0.027  # the research-use-only statement
FOOTER_BUNDLE_Y = 0.012
INDENT_X = 0.08  # text indented under a heading

# ---------------------------------------------------------------------------- summary page
SUMMARY_TOP = 0.925
SUMMARY_VALUE_X = 0.17  # values of the subject rows and names of the inputs
SUMMARY_SOURCE_X = 0.31  # the file each input came from
SUMMARY_LABEL_DETAIL_X = 0.20  # the probabilities beside the diagnosed label
ROW_STEP = 0.018  # one "key: value" row
NOTE_STEP = 0.015  # one line of small text
HEADING_STEP = 0.022
DIAGNOSIS_HEADING_STEP = 0.026  # above the large diagnosed label
DIAGNOSIS_LABEL_STEP = 0.032
LABEL_DETAIL_DROP = 0.003  # the probabilities' baseline under the large label's
GAP_SMALL = 0.004
GAP = 0.008
GAP_LARGE = 0.01
TABLE_X = 0.08
TABLE_WIDTH = 0.84
TABLE_ROW_HEIGHT = 0.022
TABLE_GAP_BELOW = 0.04
CHART_X = 0.12
CHART_WIDTH = 0.80
CHART_HEIGHT = 0.27
CHART_GAP_ABOVE = 0.03
CHART_LOWEST = 0.08
FOOTNOTE_Y = 0.07

# ---------------------------------------------------------------------------- provenance page
PROVENANCE_TOP = 0.92
PROVENANCE_VALUE_X = 0.30
PROVENANCE_ROW_STEP = 0.017
PROVENANCE_ROW_GAP = 0.003
PROVENANCE_HEADING_STEP = 0.024
PROVENANCE_NOTE_GAP = 0.006
METHODS_STEP = 0.0155
METHODS_GAP = 0.005
STATEMENT_GAP = 0.012
STATEMENT_STEP = 0.019

# ---------------------------------------------------------------------------- characters per line
WRAP_SUMMARY_VALUE = 95
WRAP_SOURCE = 88
WRAP_NOTE = 120
WRAP_WARNING = 125
WRAP_FOOTNOTE = 132
WRAP_ROUND_WARNING = 134
WRAP_PROVENANCE_VALUE = 80
WRAP_PROVENANCE_NOTE = 105
WRAP_METHODS = 104
WRAP_STATEMENT = 95

# ---------------------------------------------------------------------------- round pages
ROUND_PROBABILITIES_Y = 0.935
ROUND_ATTRIBUTION_Y = 0.921
PANELS_TOP = 0.915  # below the probabilities line
PANELS_TOP_BELOW_ATTRIBUTION = 0.902  # below the IG convergence line
ROUND_NOTE_STEP = 0.016  # a warning or the missing-modality line
MISSING_LINE_RAISE = 0.004
PANEL_TITLE_SPACE = 0.018  # above a panel's box, for its title
PANEL_SPACE_BELOW = 0.017
PANEL_BUDGET = 0.81  # height of panels (with their spaces) per page
PANEL_TITLE_HEIGHT = 0.012  # inside the box, under the title
UNIFORMITY_LINE_HEIGHT = 0.014  # attention panels: the normalised-entropy line
ATTENTION_MAP_SHARE = 0.74  # of the width; the query heatmap takes the rest
HEATMAP_GAP = 0.045
HEATMAP_BOTTOM = 0.035
HEATMAP_TRIM = 0.063  # taken off the body's height (colour bar and labels)

CROSS_HEIGHT = 0.21
MAP_HEIGHTS = {"volume": 0.25, "roi": 0.37, "bases": 0.22}
WORDS_MIN_HEIGHT = {"attention": 0.17, "ig": 0.11}
WORDS_MAX_HEIGHT = 0.40
WORDS_BASE_HEIGHT = 0.07
WORDS_LINE_HEIGHT = 0.024
WORDS_WIDTH_SHARE = 0.62  # of the page width, for the estimate of characters per line
WORDS_CHAR_ADVANCE_PT = 4.8
WORDS_MIN_CHARS = 40

BLOCK_ORDER = ("smri", "fmri", "clinical", "genetics", "cross")
MODALITY_ORDER = ("smri", "fmri", "clinical", "genetics")

Source = Literal["attention", "ig"]
PanelItem = Union["BlockAttention", "ModalityMap"]


class Box(NamedTuple):
    """A rectangle in figure coordinates (what ``fig.add_axes`` takes)."""

    x: float
    y: float
    width: float
    height: float

    @property
    def top(self) -> float:
        """``y + height``."""
        return self.y + self.height


@dataclass(frozen=True)
class PanelPlan:
    """One panel of a round page.

    Attributes
    ----------
    source : {"attention", "ig"}
        Q-former attention or Integrated Gradients.
    block : str
        The modality (``"smri"``...) or ``"cross"``.
    item : BlockAttention or ModalityMap
        What the panel shows (an attention block, or an attribution map).
    box : Box
        The whole panel; its title sits on the top edge.
    body : Box
        Under the title (and the uniformity line of attention panels).
    main : Box
        The map (the body less the query heatmap of attention panels).
    side : Box or None
        The query x key heatmap (attention panels with a map only).
    """

    source: Source
    block: str
    item: PanelItem
    box: Box
    body: Box
    main: Box
    side: Box | None


@dataclass(frozen=True)
class RoundHeader:
    """The lines under a round page's title and where the panels start (``None``: no such line)."""

    probabilities_y: float
    attribution_y: float | None
    warning_y: float | None
    missing_y: float | None
    panels_top: float


@dataclass(frozen=True)
class RoundPagePlan:
    """One page of an anchor round."""

    number: int
    round: "RoundExplanation"
    header: RoundHeader
    panels: tuple[PanelPlan, ...]


@dataclass(frozen=True)
class ReportPlan:
    """Every page: the summary (page 1), the round pages, the provenance page (last)."""

    round_pages: tuple[RoundPagePlan, ...]

    @property
    def last_round_page(self) -> int:
        """Number of the last round page (1 when there is none)."""
        return 1 + len(self.round_pages)

    @property
    def provenance_page(self) -> int:
        """Number of the provenance page."""
        return self.last_round_page + 1


def round_panels(round_: "RoundExplanation") -> list[tuple[Source, str, PanelItem]]:
    """The panels of one round in page order: attention blocks, then attribution maps."""
    panels: list[tuple[Source, str, PanelItem]] = []
    for name in BLOCK_ORDER:
        if name in round_.attention:
            panels.append(("attention", name, round_.attention[name]))
    if round_.attribution is not None:
        for name in MODALITY_ORDER:
            modality = Modality.parse(name)
            if modality in round_.attribution.maps:
                panels.append(("ig", name, round_.attribution.maps[modality]))
    return panels


def panel_height(source: Source, block: str, item: PanelItem) -> float:
    """Height of a panel's box; a note's panel grows with its lines."""
    from ..explain.attention import BlockAttention
    from ..explain.maps import WordMap

    mp = (None if block == "cross" else item.map) if isinstance(item, BlockAttention) else item
    if mp is None:
        return CROSS_HEIGHT
    if isinstance(mp, WordMap):
        chars = max(WORDS_MIN_CHARS, int(WORDS_WIDTH_SHARE * PAGE_SIZE[0] * 72 / WORDS_CHAR_ADVANCE_PT) - 2)
        lines = sum(max(1, int(math.ceil(len(part) / chars))) for part in mp.note.splitlines() if part.strip()) or 1
        return min(WORDS_MAX_HEIGHT, max(WORDS_MIN_HEIGHT[source], WORDS_BASE_HEIGHT + WORDS_LINE_HEIGHT * lines))
    return MAP_HEIGHTS[mp.kind]


def paginate(round_: "RoundExplanation") -> list[list[tuple[Source, str, PanelItem, float]]]:
    """The round's panels with their heights, split into pages of at most :data:`PANEL_BUDGET`."""
    pages: list[list[tuple[Source, str, PanelItem, float]]] = [[]]
    used = 0.0
    spacing = PANEL_TITLE_SPACE + PANEL_SPACE_BELOW
    for source, block, item in round_panels(round_):
        h = panel_height(source, block, item)
        if pages[-1] and used + h + spacing > PANEL_BUDGET:
            pages.append([])
            used = 0.0
        pages[-1].append((source, block, item, h))
        used += h + spacing
    return pages


def round_header(attribution: "RoundAttribution | None", missing: Sequence[str]) -> RoundHeader:
    """The probabilities line, the IG convergence line, its warning and the missing line."""
    attribution_y = warning_y = missing_y = None
    top = PANELS_TOP
    if attribution is not None:
        attribution_y = ROUND_ATTRIBUTION_Y
        top = PANELS_TOP_BELOW_ATTRIBUTION
        if not attribution.converged:
            warning_y = top
            top -= ROUND_NOTE_STEP
    if missing:
        missing_y = top + MISSING_LINE_RAISE
        top -= ROUND_NOTE_STEP
    return RoundHeader(ROUND_PROBABILITIES_Y, attribution_y, warning_y, missing_y, top)


def panel_plan(source: Source, block: str, item: PanelItem, box: Box) -> PanelPlan:
    """Split a panel's box into its body, map and query heatmap."""
    x0, y0, w, h = box
    body = Box(x0, y0, w, h - PANEL_TITLE_HEIGHT - (UNIFORMITY_LINE_HEIGHT if source == "attention" else 0.0))
    if source == "attention" and block != "cross":
        main_w = w * ATTENTION_MAP_SHARE
        side = Box(x0 + main_w + HEATMAP_GAP, y0 + HEATMAP_BOTTOM, w - main_w - HEATMAP_GAP,
                   body.height - HEATMAP_TRIM)
        return PanelPlan(source, block, item, box, body, Box(x0, y0, main_w, body.height), side)
    return PanelPlan(source, block, item, box, body, body, None)


def plan_round(round_: "RoundExplanation", missing: Sequence[str], first_page: int) -> list[RoundPagePlan]:
    """The pages of one round, numbered from ``first_page``, with every panel's box."""
    header = round_header(round_.attribution, missing)
    pages = []
    for i, page in enumerate(paginate(round_)):
        top = header.panels_top
        panels = []
        for source, block, item, h in page:
            top -= PANEL_TITLE_SPACE
            panels.append(panel_plan(source, block, item, Box(MARGIN_LEFT, top - h, CONTENT_WIDTH, h)))
            top -= h + PANEL_SPACE_BELOW
        pages.append(RoundPagePlan(first_page + i, round_, header, tuple(panels)))
    return pages


def plan_report(explanation: "SubjectExplanation | None") -> ReportPlan:
    """Plan every round page of the report (none without an explanation)."""
    pages: list[RoundPagePlan] = []
    if explanation is not None:
        for round_ in explanation.rounds:
            pages.extend(plan_round(round_, explanation.modalities_missing, 2 + len(pages)))
    return ReportPlan(tuple(pages))


def summary_table_box(top: float, n_rows: int) -> Box:
    """The probability table (``n_rows`` body rows and a header row) hanging from ``top``."""
    height = TABLE_ROW_HEIGHT * (n_rows + 1)
    return Box(TABLE_X, top - height, TABLE_WIDTH, height)


def summary_chart_box(top: float) -> Box:
    """The bar chart under ``top`` (never lower than :data:`CHART_LOWEST`)."""
    return Box(CHART_X, max(CHART_LOWEST, top - CHART_GAP_ABOVE - CHART_HEIGHT), CHART_WIDTH, CHART_HEIGHT)

