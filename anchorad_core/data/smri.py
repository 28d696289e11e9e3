"""Structural MRI: read a ``*_T1w.nii[.gz]`` and turn it into the model's input cube.

Pipeline (:func:`preprocess_t1`), each step done by the field library that owns it:

1. reorient to RAS+ (nibabel :func:`~nibabel.orientations.io_orientation`, the same
   closest-canonical rule as :func:`nibabel.as_closest_canonical`);
2. crop to the foreground bounding box (MONAI ``CropForeground`` box, voxels above
   ``smri_foreground_threshold`` x the 99th percentile, 2-voxel margin);
3. resample to isotropic ``spacing`` mm (MONAI ``Resize``, trilinear, after MONAI's
   anti-aliasing rule: Gaussian with sigma = (in/out - 1) / 2, via scipy.ndimage);
   ``spacing`` is ``config.smri_spacing_mm`` or, when that is ``None``,
   ``max(foreground extent in mm) / smri_cube`` so the whole foreground fits;
4. scale the 5th-95th intensity percentiles to [0, 1] with clipping (the rule of MONAI
   ``ScaleIntensityRangePercentiles``: numpy percentiles, then MONAI ``ScaleIntensityRange``);
5. centre pad (zeros) / crop to ``smri_cube``\\ :sup:`3` (MONAI ``BorderPad`` /
   ``SpatialCrop``).

Every step is recorded in an :class:`SmriGeometry`, so a map on the cube (an attention or
attribution map, a segmentation) can be put back on the native T1 grid with
:func:`cube_to_native`, and :attr:`SmriGeometry.cube_affine` gives the cube's voxel-to-world
affine for overlays.
"""
from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform
from scipy import ndimage

from ..errors import InputDataError
from .config import PreprocessConfig
from .fileio import check_finite, check_gzip
from .fileio import load_spatial_image

__all__ = ["SmriGeometry", "load_t1", "preprocess_t1", "read_smri", "cube_to_native", "is_nifti_name"]

_RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


def is_nifti_name(path: "str | Path") -> bool:
    """True for ``*.nii`` and ``*.nii.gz`` file names."""
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


@dataclass(frozen=True)
class SmriGeometry:
    """How a native T1 grid maps onto the model's cube (JSON-serialisable).

    Attributes
    ----------
    native_shape : tuple of int
        Spatial shape of the T1 as stored in the file.
    native_affine : list of list of float
        The file's voxel-to-world affine (4 x 4).
    ornt : list of list of float
        nibabel orientation (3 x 2) taking the native axes to RAS+.
    canonical_shape : tuple of int
        Shape after reorientation to RAS+.
    crop_start, crop_stop : tuple of int
        Foreground box in the RAS+ grid (``stop`` exclusive).
    resized_shape : tuple of int
        Shape of the box after resampling to ``spacing_mm``.
    cube_offset : tuple of int
        Cube index of resized voxel 0 along each axis (negative when the resized box was
        larger than the cube and its border was cropped).
    cube : int
        Cube edge in voxels.
    spacing_mm : float
        Nominal isotropic voxel size of the cube.
    """

    native_shape: tuple[int, int, int]
    native_affine: list[list[float]]
    ornt: list[list[float]]
    canonical_shape: tuple[int, int, int]
    crop_start: tuple[int, int, int]
    crop_stop: tuple[int, int, int]
    resized_shape: tuple[int, int, int]
    cube_offset: tuple[int, int, int]
    cube: int
    spacing_mm: float

    @property
    def crop_shape(self) -> tuple[int, int, int]:
        """Shape of the foreground box on the RAS+ grid."""
        return int_triple(b - a for a, b in zip(self.crop_start, self.crop_stop))

    @property
    def zoom(self) -> tuple[float, float, float]:
        """Resampling factor per axis (resized / cropped voxels)."""
        (r0, r1, r2), (c0, c1, c2) = self.resized_shape, self.crop_shape
        return r0 / c0, r1 / c1, r2 / c2

    @property
    def canonical_affine(self) -> np.ndarray:
        """Voxel-to-world affine of the RAS+ reoriented grid."""
        ornt = np.asarray(self.ornt)
        return np.asarray(self.native_affine) @ inv_ornt_aff(ornt, self.native_shape)

    @property
    def cube_affine(self) -> np.ndarray:
        """Voxel-to-world affine of the cube (half-voxel-centre resampling convention)."""
        scale = np.array(self.crop_shape, float) / np.array(self.resized_shape, float)
        # canonical index = crop_start + (v - offset + 0.5) * scale - 0.5
        shift = np.array(self.crop_start, float) + (0.5 - np.array(self.cube_offset, float)) * scale - 0.5
        m = np.eye(4)
        m[:3, :3] = np.diag(scale)
        m[:3, 3] = shift
        return self.canonical_affine @ m

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SmriGeometry":
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        for key in ("native_shape", "canonical_shape", "crop_start", "crop_stop", "resized_shape", "cube_offset"):
            d[key] = tuple(int(v) for v in d[key])
        d["native_affine"] = [[float(x) for x in row] for row in d["native_affine"]]
        d["ornt"] = [[float(x) for x in row] for row in d["ornt"]]
        d["cube"] = int(d["cube"])
        d["spacing_mm"] = float(d["spacing_mm"])
        return cls(**d)


def load_t1(path: "str | Path") -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Read a T1 NIfTI and validate it.

    Parameters
    ----------
    path : str or Path
        ``*.nii`` or ``*.nii.gz`` file.

    Returns
    -------
    data : ndarray, float32, 3-D
    affine : ndarray (4, 4)
    zooms : tuple of float
        Voxel size in mm along the three stored axes.

    Raises
    ------
    InputDataError
        Missing, not NIfTI, not gzip despite ``.gz``, truncated/corrupt, not 3-D (a 4-D file
        with a single volume is accepted), NaN/Inf values, or an empty (constant) image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError("T1 image not found", path)
    if not is_nifti_name(path):
        raise InputDataError("a T1 image must be a NIfTI file (*.nii or *.nii.gz)", path)
    check_gzip(path)
    try:
        img = load_spatial_image(str(path))
    except Exception as exc:  # nibabel raises many types for bad headers
        raise InputDataError(f"not a readable NIfTI image ({type(exc).__name__}: {exc})", path) from None
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        extra = f" with {shape[3]} volumes" if len(shape) == 4 else ""
        raise InputDataError(
            f"a T1 image must be 3-D, but this one is {len(shape)}-D{extra} (shape {shape})", path
        )
    if min(shape) < 2:
        raise InputDataError(f"a T1 image must be 3-D with at least 2 voxels per axis, got shape {shape}", path)
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32)).reshape(shape)
    except (EOFError, OSError, zlib.error, ValueError) as exc:
        raise InputDataError(f"the image data are truncated or corrupt ({type(exc).__name__}: {exc})", path) from None
    check_finite(data, path, "the T1 image")
    if float(data.max()) <= float(data.min()):
        raise InputDataError("the T1 image is constant (no contrast)", path)
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputDataError("the image affine is singular or not finite", path)
    z0, z1, z2 = (float(z) for z in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    return data, affine, (z0, z1, z2)


def int_triple(values: "Iterable[Any]") -> tuple[int, int, int]:
    """Three values as a tuple of ints (a 3-D shape or index); ``ValueError`` for another count."""
    a, b, c = (int(v) for v in values)
    return a, b, c


def preprocess_t1(
    data: np.ndarray,
    affine: np.ndarray,
    config: PreprocessConfig | None = None,
    path: "str | Path | None" = None,
) -> tuple[np.ndarray, SmriGeometry]:
    """Turn a native 3-D T1 array into the model's cube.

    Parameters
    ----------
    data : ndarray (X, Y, Z)
        Native T1 intensities.
    affine : ndarray (4, 4)
        Native voxel-to-world affine.
    config : PreprocessConfig, optional
        Uses ``smri_cube``, ``smri_spacing_mm``, ``smri_foreground_threshold`` and
        ``smri_percentiles``.
    path : str or Path, optional
        File name used in error messages.

    Returns
    -------
    cube : ndarray, float32, (cube, cube, cube)
        RAS+, values in [0, 1].
    geometry : SmriGeometry
    """
    from monai.transforms import BorderPad, CropForeground, Resize, ScaleIntensityRange, SpatialCrop

    config = config or PreprocessConfig()
    cube = config.smri_cube
    native_shape = tuple(int(s) for s in data.shape)
    ornt = io_orientation(affine)
    canon = np.ascontiguousarray(apply_orientation(np.asarray(data, dtype=np.float32), ornt))
    canon_affine = affine @ inv_ornt_aff(ornt, native_shape)
    zooms = np.sqrt((canon_affine[:3, :3] ** 2).sum(axis=0))

    # 2. foreground box
    threshold = config.smri_foreground_threshold * float(np.percentile(canon, 99))
    low = float(canon.min())
    threshold = max(threshold, low + 1e-6 * (float(canon.max()) - low))
    img_t = torch.from_numpy(canon)[None]
    cropper = CropForeground(select_fn=lambda x: x > threshold, margin=2, allow_smaller=True)
    # numpy path: faster than torch.any on CPU (monai annotates a Tensor but takes numpy arrays too)
    start, stop = cropper.compute_bounding_box(canon[None])  # type: ignore[arg-type]  # see above
    start = np.maximum(np.asarray(start, int), 0)
    stop = np.minimum(np.asarray(stop, int), np.asarray(canon.shape))
    if np.any(stop - start < 2):
        raise InputDataError("no foreground found in the T1 image (it is empty or almost constant)", path)
    cropped = SpatialCrop(roi_start=start.tolist(), roi_end=stop.tolist())(img_t)

    # 3. isotropic resampling
    extent_mm = (stop - start) * zooms
    if config.smri_spacing_mm is None:
        spacing = float(extent_mm.max()) / cube
        target = np.clip(np.round(extent_mm / spacing), 1, cube).astype(int)
    else:
        spacing = float(config.smri_spacing_mm)
        target = np.maximum(np.round(extent_mm / spacing), 1).astype(int)
    # anti-aliasing before downsampling: MONAI's rule (Gaussian, sigma = (in/out - 1) / 2 per
    # axis) applied with scipy's separable filter, several times faster than MONAI's conv3d on CPU
    sigma = np.maximum((np.asarray(cropped.shape[1:]) / target - 1.0) / 2.0, 0.0)
    if np.any(sigma > 0):
        cropped = torch.from_numpy(ndimage.gaussian_filter(np.asarray(cropped[0]), sigma, mode="nearest"))[None]
    resized = Resize(spatial_size=target.tolist(), mode="trilinear", align_corners=False, anti_aliasing=False)(cropped)

    # 4. percentile scaling
    lo, hi = config.smri_percentiles
    # same as MONAI ScaleIntensityRangePercentiles(lo, hi, 0, 1, clip=True); the percentiles
    # are taken with np.percentile, several times faster than torch.quantile on CPU
    resized_np = np.asarray(resized, dtype=np.float32)
    a_min, a_max = (float(v) for v in np.percentile(resized_np, [lo, hi]))
    if a_max <= a_min:
        raise InputDataError(
            f"the T1 image has no contrast between its {lo:g}th and {hi:g}th intensity percentiles", path
        )
    scaled = ScaleIntensityRange(a_min=a_min, a_max=a_max, b_min=0.0, b_max=1.0, clip=True)(torch.from_numpy(resized_np))

    # 5. centre pad / crop to the cube
    pad_before = np.maximum((cube - target) // 2, 0)
    pad_after = np.maximum(cube - target - pad_before, 0)
    crop_before = np.maximum((target - cube) // 2, 0)
    out = torch.as_tensor(scaled)  # already a tensor (monai annotates array-or-tensor)
    if np.any(crop_before > 0) or np.any(target > cube):
        out = SpatialCrop(roi_start=crop_before.tolist(), roi_end=(crop_before + np.minimum(target, cube)).tolist())(out)
    if np.any(pad_before > 0) or np.any(pad_after > 0):
        border = [int(v) for pair in zip(pad_before, pad_after) for v in pair]
        out = BorderPad(spatial_border=border, mode="constant", value=0.0)(out)
    arr = np.asarray(out[0], dtype=np.float32)
    assert arr.shape == (cube, cube, cube), arr.shape
    geometry = SmriGeometry(
        native_shape=int_triple(native_shape),
        native_affine=np.asarray(affine, float).tolist(),
        ornt=np.asarray(ornt, float).tolist(),
        canonical_shape=int_triple(canon.shape),
        crop_start=int_triple(start),
        crop_stop=int_triple(stop),
        resized_shape=int_triple(target),
        cube_offset=int_triple(pad_before - crop_before),
        cube=cube,
        spacing_mm=spacing,
    )
    return np.ascontiguousarray(arr), geometry


def read_smri(path: "str | Path", config: PreprocessConfig | None = None) -> tuple[np.ndarray, SmriGeometry]:
    """Read and preprocess a ``*_T1w.nii[.gz]`` file (see the module docstring).

    Returns
    -------
    cube : ndarray, float32, (cube, cube, cube)
    geometry : SmriGeometry
    """
    data, affine, _ = load_t1(path)
    return preprocess_t1(data, affine, config, path=path)


def cube_to_native(map_cube: np.ndarray, geometry: SmriGeometry, order: int = 1) -> np.ndarray:
    """Map a voxel/token map on the cube back onto the native T1 grid.

    Parameters
    ----------
    map_cube : ndarray
        A map on the cube, ``(cube, cube, cube)``, or a coarser token grid (e.g. 6 x 6 x 6
        tokens) that covers the cube evenly; coarser grids are first upsampled to the cube.
    geometry : SmriGeometry
        From :func:`preprocess_t1`.
    order : {0, 1}
        0 = nearest neighbour (label maps), 1 = trilinear.

    Returns
    -------
    ndarray, float32, ``geometry.native_shape``
        Zero outside the foreground box.
    """
    from monai.transforms import Resize

    mode = "nearest" if order == 0 else "trilinear"
    align_corners = None if order == 0 else False  # None: Resize's default (nearest takes no align_corners)
    m = torch.as_tensor(np.asarray(map_cube, dtype=np.float32))
    if m.ndim != 3:
        raise ValueError(f"map_cube must be 3-D, got shape {tuple(m.shape)}")
    cube = geometry.cube
    if tuple(m.shape) != (cube, cube, cube):
        m = torch.as_tensor(Resize(spatial_size=(cube, cube, cube), mode=mode, align_corners=align_corners)(m[None]))[0]
    # undo pad/crop: resized[j] = cube[j + offset]
    target = np.asarray(geometry.resized_shape)
    offset = np.asarray(geometry.cube_offset)
    resized = torch.zeros(tuple(int(t) for t in target), dtype=torch.float32)
    src_lo = np.maximum(offset, 0)
    src_hi = np.minimum(offset + target, cube)
    dst_lo = src_lo - offset
    dst_hi = src_hi - offset
    resized[dst_lo[0]:dst_hi[0], dst_lo[1]:dst_hi[1], dst_lo[2]:dst_hi[2]] = m[
        src_lo[0]:src_hi[0], src_lo[1]:src_hi[1], src_lo[2]:src_hi[2]
    ]
    # undo resampling
    box = torch.as_tensor(Resize(spatial_size=list(geometry.crop_shape), mode=mode,
                                 align_corners=align_corners)(resized[None]))[0]
    canon = np.zeros(geometry.canonical_shape, dtype=np.float32)
    a, b = geometry.crop_start, geometry.crop_stop
    canon[a[0]:b[0], a[1]:b[1], a[2]:b[2]] = np.asarray(box)
    # undo reorientation
    back = ornt_transform(_RAS, np.asarray(geometry.ornt))
    native = apply_orientation(canon, back)
    assert native.shape == tuple(geometry.native_shape), (native.shape, geometry.native_shape)
    return np.ascontiguousarray(native, dtype=np.float32)
