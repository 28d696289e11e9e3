"""sMRI panel: a map on the subject's native T1, cut through its strongest voxel inside the head."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..anatomy import Anatomy
from ..layout import Box
from .ortho import draw_ortho_slices, ras_zooms

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ...explain.maps import VolumeMap

HEAD_PERCENTILE = 30  # T1 intensities above this percentile of the foreground are "inside the head"
BORDER_VOXELS = 3  # the cut keeps this far from the volume's faces


def volume_panel(fig: "Figure", mp: "VolumeMap", box: Box, diverging: bool, anatomy: Anatomy) -> None:
    """Draw ``mp`` over the subject's T1 in three orthogonal slices.

    ``diverging``: an attribution map (signed); else attention as weight / uniform.
    """
    import nibabel as nib

    t1, affine = anatomy.t1()
    ornt = nib.orientations.io_orientation(affine)
    t1r = nib.orientations.apply_orientation(t1, ornt)
    mr = nib.orientations.apply_orientation(mp.data, ornt)
    zooms = ras_zooms(affine, ornt)
    caption = "token map on the subject's T1 (native grid), weight / uniform"
    if diverging:
        caption = mp.caption or "IG voxel map on the subject's T1 (native grid)"
    peak = _peak_inside_head(t1r, mr)
    draw_ortho_slices(fig, t1r, mr, zooms, peak, box, diverging, caption)


def _peak_inside_head(t1: np.ndarray, values: np.ndarray) -> tuple[int, ...]:
    """The voxel of the largest ``|values|`` inside the head, away from the border of the volume."""
    inside = t1 > np.percentile(t1[t1 > 0], HEAD_PERCENTILE) if np.any(t1 > 0) else np.ones(t1.shape, bool)
    b = BORDER_VOXELS
    inside[:b], inside[-b:], inside[:, :b], inside[:, -b:], inside[:, :, :b], inside[:, :, -b:] = (False,) * 6
    score = np.where(inside, np.abs(values), -1.0)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(score)), values.shape))
