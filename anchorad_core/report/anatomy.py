"""The anatomy the report's brain maps are drawn over: the subject's T1, or the atlas template."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..data.fileio import load_spatial_image

if TYPE_CHECKING:
    import nibabel as nib

ATLAS_BACKGROUND_SAME_GRID = "subject T1 (same grid as the atlas)"
ATLAS_BACKGROUND_TEMPLATE = "MNI152 2 mm template T1 (atlas space)"


class Anatomy:
    """The subject's T1 (read once, on first use) and the atlas the ROI maps are painted into.

    Parameters
    ----------
    t1_path : str or None
        The subject's native T1 (``SubjectExplanation.t1_path``).
    atlas : str
        The atlas name (``SubjectExplanation.atlas``).
    """

    def __init__(self, t1_path: str | None, atlas: str = "schaefer400_17n") -> None:
        self.t1_path = t1_path
        self.atlas = atlas
        self._t1: tuple[np.ndarray, np.ndarray] | None = None

    def t1(self) -> tuple[np.ndarray, np.ndarray]:
        """The T1 volume (X, Y, Z) float32 and its affine."""
        if self._t1 is None:
            if self.t1_path is None:
                raise FileNotFoundError("this explanation has no native T1 image")
            img = load_spatial_image(self.t1_path)
            self._t1 = (np.asarray(img.get_fdata(dtype=np.float32)).reshape(img.shape[:3]), img.affine)
        return self._t1

    def atlas_background(self) -> "tuple[np.ndarray, nib.Nifti1Image, str]":
        """The volume to draw the atlas over, the atlas image, and that volume's name.

        The subject's T1 when it lies on the atlas grid, else the MNI152 template the atlas is on.
        """
        import nibabel as nib

        from ..data.templates import atlas_image, template_path

        atlas = atlas_image(self.atlas)
        try:
            t1, affine = self.t1()
            if t1.shape == atlas.shape and np.allclose(affine, atlas.affine, atol=1e-3):
                return t1, atlas, ATLAS_BACKGROUND_SAME_GRID
        except Exception:  # noqa: BLE001 - no T1: template background
            pass
        tpl = load_spatial_image(str(template_path("t1_demo.nii.gz")))
        return np.asarray(tpl.get_fdata(dtype=np.float32)), atlas, ATLAS_BACKGROUND_TEMPLATE
