"""Configuration constants of the 3-D UniFormer (family ``"uniformer3d"``): readouts, strides, checkpoint rules."""
from __future__ import annotations

from typing import Literal


#: How :func:`load_brainmvp_checkpoint` treats ``patch_embed1.proj`` when the model's
#: ``in_chans`` differs from the checkpoint's.
InChannelsRule = Literal["skip", "repeat", "error"]

TOTAL_STRIDE = 16
READOUTS = ("mean", "pyramid")
#: Edge of the grid the ``"pyramid"`` readout pools stages 1-2 to (2 x 2 x 2 cells).
PYRAMID_GRID = 2
PYRAMID_CELLS = PYRAMID_GRID**3
