"""The fonts every figure of the report is drawn with."""
from __future__ import annotations

from typing import TYPE_CHECKING, ContextManager

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

REPORT_RC: "dict[RcKeyType, float]" = {
    "font.size": 8.5, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "legend.fontsize": 7, "figure.titlesize": 12, "pdf.fonttype": 42,
}


def report_style() -> ContextManager[None]:
    """A matplotlib ``rc_context`` with legible default fonts for the report."""
    import matplotlib as mpl

    return mpl.rc_context(REPORT_RC)
