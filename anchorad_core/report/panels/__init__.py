"""The panels of a round page: one module per kind of map, and :func:`draw_panel` choosing among them.

Every panel function takes the figure, what it shows, its :class:`~..layout.Box` and, as plain
arguments, whatever else it needs (whether the map is signed, near uniform, the anatomy under it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ..anatomy import Anatomy
from ..layout import PanelPlan
from ...modality import Modality
from ..text import TITLES
from .bases import bases_panel
from .cross import cross_panel
from .query_heatmap import query_heatmap
from .roi import roi_panel
from .volume import volume_panel
from .words import words_panel

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ...explain.attention import BlockAttention
    from ...explain.maps import ModalityMap
    from ...explain.subject import RoundExplanation

__all__ = ["draw_panel", "bases_panel", "cross_panel", "query_heatmap", "roi_panel", "volume_panel", "words_panel"]

UNIFORMITY_LINE_DROP = 0.002  # under the box's top edge


def draw_panel(fig: "Figure", plan: PanelPlan, round_: "RoundExplanation", anatomy: Anatomy,
               missing: Sequence[str]) -> None:
    """Draw one planned panel: its title, an attention block's uniformity line, the map (and query heatmap)."""
    from ...explain.attention import BlockAttention, relative_map

    if not isinstance(plan.item, BlockAttention):  # an Integrated Gradients map
        _title(fig, plan, _attribution_title(plan.block, round_))
        _draw_map(fig, plan.item, plan, anatomy, near_uniform=False, verdict="")
        return
    block = plan.item
    _uniformity_line(fig, plan, block)
    _title(fig, plan, _attention_title(plan.block, block))
    if plan.block == "cross":
        cross_panel(fig, block, plan.body, missing)
        return
    verdict = block.uniformity.verdict() if block.uniformity is not None else ""
    relative = relative_map(block)
    if relative is not None:
        _draw_map(fig, relative, plan, anatomy, block.near_uniform, verdict)  # weight / uniform
    if plan.side is not None:
        query_heatmap(fig, block, plan.side)


def _title(fig: "Figure", plan: PanelPlan, title: str) -> None:
    fig.text(plan.box.x, plan.box.top, title, fontsize=9.5, weight="bold", va="bottom")


def _uniformity_line(fig: "Figure", plan: PanelPlan, block: "BlockAttention") -> None:
    """How far the block is from uniform, in bold when near uniform."""
    u = block.uniformity
    if u is None:
        return
    verdict = "NEAR UNIFORM: no region stands out" if u.near_uniform else "not uniform"
    fig.text(plan.box.x, plan.box.top - UNIFORMITY_LINE_DROP, f"normalised entropy {u.entropy:.3f} · max/uniform "
             f"{u.max_ratio:.2f}× over {u.n_keys} valid keys · {verdict}", fontsize=7.5, va="top",
             color="#9a6700" if u.near_uniform else "0.25", weight="bold" if u.near_uniform else None)


def _attribution_title(block_name: str, round_: "RoundExplanation") -> str:
    totals = round_.attribution.totals if round_.attribution is not None else {}
    total = totals.get(Modality.parse(block_name), 0.0)
    role = " (anchor)" if block_name == round_.anchor else " (auxiliary, via the Q-former)"
    return f"Integrated Gradients · {TITLES[block_name]} input{role} · sum {total:+.3g}"


def _attention_title(block_name: str, block: "BlockAttention") -> str:
    if block_name == "cross":
        return "Q-former attention · cross-modal queries over the auxiliary blocks"
    return (f"Q-former attention · {TITLES[block_name]} block (mean over heads and "
            f"{block.per_query.shape[0]} queries)")


def _draw_map(fig: "Figure", mp: "ModalityMap", plan: PanelPlan, anatomy: Anatomy, near_uniform: bool,
              verdict: str) -> None:
    """The panel kind of ``mp``: attributions are signed (diverging colours), attention is weight / uniform."""
    from ...explain.maps import RoiMap, VolumeMap, WordMap

    diverging = plan.source == "ig"
    if isinstance(mp, VolumeMap):
        volume_panel(fig, mp, plan.main, diverging, anatomy)
    elif isinstance(mp, RoiMap):
        roi_panel(fig, mp, plan.main, diverging, anatomy, near_uniform, verdict)
    elif isinstance(mp, WordMap):
        words_panel(fig, mp, plan.main, diverging, near_uniform)
    else:
        bases_panel(fig, mp, plan.main, diverging, near_uniform, verdict)
