"""The Inspect panel's matplotlib canvas: query x token heatmaps, cross-modal shares, DNA tracks.

Uses ``matplotlib.backends.backend_qtagg`` (works with any Qt binding qtpy selected). Colours
follow napari's dark theme so the figure does not glare next to the viewer.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

__all__ = ["PlotCanvas"]

BG = "#262930"
FG = "#d6d6d6"
GRID = "#5a5f6a"


class PlotCanvas(QWidget):
    """A resizable matplotlib figure with a few AnchorAD plot kinds."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(4.5, 3.2), dpi=90, facecolor=BG, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.canvas.setMinimumHeight(220)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.kind = ""
        self.cell_texts: list[list[str]] = []  # cross-modal chart: the text of each block's cells
        self.clear("")

    # ------------------------------------------------------------------ helpers
    def _axes(self, n: int = 1, heights: Sequence[float] | None = None) -> list[Any]:
        self.figure.clear()
        axes = self.figure.subplots(n, 1, height_ratios=heights, squeeze=False)[:, 0]
        for ax in axes:
            ax.set_facecolor(BG)
            ax.tick_params(colors=FG, labelsize=8)
            for spine in ax.spines.values():
                spine.set_color(GRID)
            ax.xaxis.label.set_color(FG)
            ax.yaxis.label.set_color(FG)
            ax.title.set_color(FG)
        return list(axes)

    def _colorbar(self, image: Any, ax: Any, label: str) -> None:
        cb = self.figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
        cb.ax.tick_params(colors=FG, labelsize=7)
        cb.outline.set_edgecolor(GRID)
        cb.set_label(label, color=FG, fontsize=8)

    def _draw(self, kind: str) -> None:
        self.kind = kind
        self.canvas.draw_idle()

    # ------------------------------------------------------------------ plots
    def clear(self, message: str = "") -> None:
        """An empty figure with a centred message."""
        (ax,) = self._axes(1)
        ax.axis("off")
        if message:
            ax.text(0.5, 0.5, message, ha="center", va="center", color=FG, fontsize=9, wrap=True,
                    transform=ax.transAxes)
        self._draw("empty")

    def attention_heatmap(self, per_query: np.ndarray, title: str, token_label: str,
                          track: np.ndarray | None = None, track_label: str = "", n_valid: int | None = None,
                          figures: str = "") -> None:
        """Query x token attention (mean over heads) as weight / uniform, optionally with a per-base track.

        With ``n_valid`` (the block's valid keys) every cell shows ``weight * n_valid``: 1 is the
        uniform level (white, the centre of a diverging scale from 0 to ``max(2, max)``), so a
        near-uniform block looks flat. ``figures`` (the uniformity figures) go under the title.
        """
        from matplotlib.colors import TwoSlopeNorm

        per_query = np.asarray(per_query, dtype=float)
        n = int(n_valid) if n_valid else per_query.shape[-1]
        ratio = per_query * n
        axes = self._axes(2 if track is not None else 1, [2.2, 1.0] if track is not None else None)
        ax = axes[0]
        top = max(2.0, float(np.nanmax(ratio)) if ratio.size else 2.0)
        self.heatmap_norm = TwoSlopeNorm(vcenter=1.0, vmin=0.0, vmax=top)
        image = ax.imshow(ratio, aspect="auto", interpolation="nearest", cmap="RdBu_r", norm=self.heatmap_norm)
        ax.set_title(title + (f"\n{figures}" if figures else ""), fontsize=9)
        ax.set_ylabel("query", fontsize=8)
        ax.set_xlabel(token_label, fontsize=8)
        self._colorbar(image, ax, "weight / uniform (1 = uniform)")
        if track is not None:
            self._track(axes[1], [track], track_label, signed=False)
            axes[1].axhline(1.0, color=GRID, lw=0.8, ls="--")
        self._draw("heatmap")

    def cross_shares(self, query_shares: np.ndarray, blocks: Sequence[str], title: str,
                     missing: Sequence[bool] | None = None) -> None:
        """Cross-modal queries x auxiliary blocks: share of each query's attention per block.

        Blocks of missing modalities (``missing[b]``) are masked out of the Q-former: their row
        is greyed and says "missing" instead of showing shares of 0.00.
        """
        import matplotlib

        query_shares = np.asarray(query_shares, dtype=float)
        missing = np.asarray(list(missing) if missing is not None else [False] * len(blocks), dtype=bool)
        shown = query_shares.copy()
        shown[:, missing] = np.nan
        (ax,) = self._axes(1)
        cmap = matplotlib.colormaps["inferno"].copy()
        cmap.set_bad("#5a5a5a")
        top = float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0
        image = ax.imshow(shown.T, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0.0,
                          vmax=max(top, 1e-6))
        ax.set_yticks(range(len(blocks)), labels=[f"{b} (missing)" if m else b for b, m in zip(blocks, missing)])
        ax.set_xlabel("cross-modal query", fontsize=8)
        ax.set_title(title, fontsize=9)
        self.cell_texts = []
        for b in range(query_shares.shape[1]):
            if missing[b]:
                ax.text((query_shares.shape[0] - 1) / 2, b, "missing: masked out of the Q-former", ha="center",
                        va="center", fontsize=7, color="white")
                self.cell_texts.append(["missing"] * query_shares.shape[0])
                continue
            row = []
            for q in range(query_shares.shape[0]):
                row.append(f"{query_shares[q, b]:.2f}")
                if query_shares.shape[0] <= 16:
                    ax.text(q, b, row[-1], ha="center", va="center", fontsize=6,
                            color="white" if query_shares[q, b] < 0.6 * top else "black")
            self.cell_texts.append(row)
        self._colorbar(image, ax, "share of attention")
        self._draw("heatmap")

    def attribution_summary(self, totals: dict[str, float], title: str, tracks: list[np.ndarray] | None = None) -> None:
        """Signed attribution per modality (bars), and the DNA tracks when genetics is present."""
        axes = self._axes(2 if tracks else 1, [1.2, 1.0] if tracks else None)
        ax = axes[0]
        names = list(totals)
        values = np.array([totals[n] for n in names], dtype=float)
        colors = ["#ff5a3c" if v >= 0 else "#3c8cff" for v in values]
        ax.barh(range(len(names)), values, color=colors)
        ax.set_yticks(range(len(names)), labels=names)
        ax.axvline(0.0, color=GRID, lw=0.8)
        ax.invert_yaxis()
        ax.set_xlabel("sum of attributions (towards the class > 0)", fontsize=8)
        ax.set_title(title, fontsize=9)
        if tracks:
            self._track(axes[1], tracks, "Genetics: attribution per base", signed=True)
        self._draw("attribution")

    def _track(self, ax: Any, tracks: list[np.ndarray], label: str, signed: bool) -> None:
        for i, t in enumerate(tracks[:4]):
            t = np.asarray(t, dtype=float)
            ax.plot(np.arange(t.size), t, lw=0.9, label=f"sequence {i + 1}")
        if signed:
            ax.axhline(0.0, color=GRID, lw=0.8)
        ax.set_xlabel("base position", fontsize=8)
        ax.set_title(label, fontsize=9)
        if len(tracks) > 1:
            legend = ax.legend(fontsize=7, facecolor=BG, edgecolor=GRID, loc="upper right")
            for text in legend.get_texts():
                text.set_color(FG)
