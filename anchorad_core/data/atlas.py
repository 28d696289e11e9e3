"""The fMRI parcellation: the shipped Schaefer-400 or an atlas the user brings.

A **user atlas** is two files named in the preprocessing config (:class:`.PreprocessConfig`):

``fmri_atlas_image``
    A 3-D label NIfTI in the space of the BOLD runs (MNI), one positive integer label per
    parcel, 0 for background. It is resampled to each run's grid (nearest neighbour).
``fmri_atlas_labels``
    A tab-separated label table with a header and one row per ROI, **in the order of the
    model's ROI axis** (row ``i`` is row ``i`` of every ROI series): column ``index`` (the
    parcel's label in the image), column ``name``, and optionally ``network``; other columns
    are kept and ignored. Labels in the image that the table does not list are left out.

``fmri_atlas`` gives the atlas its name (e.g. ``tian3_schaefer400``), which ROI-table
sidecars must name too (``"Atlas"``), and ``fmri_n_rois`` must equal the table's rows. The
SHA-256 of both files (``fmri_atlas_sha256``) is recorded in the config, so a bundle knows
exactly which atlas its ROI series came from; :func:`copy_atlas_files` puts both files into a
bundle and :func:`atlas_paths_in` points a loaded bundle's config at them.

The published Brain-JEPA (preset ``brainjepa-vit-b``) reads 450 ROIs: Tian Scale III
subcortex (50) followed by Schaefer-400 (17-network order); give one label image holding both
(Tian labels 1-50, Schaefer labels 51-450, as :func:`merge_label_images` writes) and its table.
"""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .fileio import load_spatial_image

if TYPE_CHECKING:  # pragma: no cover
    from .config import PreprocessConfig

__all__ = [
    "Atlas",
    "ATLAS_FOLDER",
    "atlas_of",
    "atlas_sha256",
    "read_label_table",
    "copy_atlas_files",
    "atlas_paths_in",
    "merge_label_images",
]

#: Folder of a bundle that holds a user atlas's two files.
ATLAS_FOLDER = "atlas"

_IMAGE_KEY, _LABELS_KEY = "fmri_atlas_image", "fmri_atlas_labels"

#: User atlases already checked in this process: (name, image, table, SHA-256, ROIs).
_CHECKED: set[tuple[str, str, str, str, int]] = set()


@dataclass(frozen=True)
class Atlas:
    """A parcellation as the fMRI reader uses it.

    Attributes
    ----------
    name
        ``fmri_atlas``.
    image_path
        The label NIfTI.
    labels
        The label table: ``index``, ``name``, ``network`` (``""`` where not given), one row per
        ROI in the model's ROI order.
    shipped
        True for an atlas AnchorAD ships.
    sha256
        Content hash of the image and the table (user atlases; ``None`` for shipped ones).
    """

    name: str
    image_path: Path
    labels: pd.DataFrame
    shipped: bool
    sha256: "str | None" = None

    @property
    def n_rois(self) -> int:
        """ROIs (rows of the label table)."""
        return len(self.labels)

    @property
    def label_values(self) -> np.ndarray:
        """Image label of every ROI, in ROI order."""
        return self.labels["index"].to_numpy(dtype=np.int64)

    def image(self) -> Any:
        """The label image (nibabel, integer data)."""
        from .templates import atlas_image

        return atlas_image(self.name)


def atlas_sha256(image: "str | Path", labels: "str | Path") -> str:
    """SHA-256 over the bytes of a user atlas's label image and label table.

    Raises
    ------
    ConfigError
        If either file cannot be read (naming it).
    """
    digest = hashlib.sha256()
    for path in (Path(image), Path(labels)):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the fMRI atlas file ({exc.strerror or exc})", path) from None
        digest.update(hashlib.sha256(data).hexdigest().encode())
    return digest.hexdigest()


def read_label_table(path: "str | Path") -> pd.DataFrame:
    """Read and check a user atlas's label table (module docstring).

    Raises
    ------
    ConfigError
        If the file is unreadable, lacks ``index`` or ``name``, or its indices are not unique
        positive integers (one line naming the file).
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t", dtype={"name": str, "network": str}, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not a readable tab-separated label table ({type(exc).__name__}: {exc})", path) from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in ("index", "name") if c not in table.columns]
    if missing:
        raise ConfigError(
            f"the atlas label table needs the columns index and name (missing: {', '.join(missing)}); "
            f"found {', '.join(table.columns)}", path)
    if table.empty:
        raise ConfigError("the atlas label table has no rows", path)
    index = pd.to_numeric(table["index"], errors="coerce")
    bad = table.index[index.isna() | (index <= 0) | (index != index.round())].tolist()
    if bad:
        raise ConfigError(f"label table row(s) {[b + 2 for b in bad[:5]]}: index must be a positive integer label", path)
    duplicated = sorted(set(index[index.duplicated()].astype(int)))
    if duplicated:
        raise ConfigError(f"label table lists label(s) {duplicated[:5]} more than once", path)
    table["index"] = index.astype(np.int64)
    if "network" not in table.columns:
        table["network"] = ""
    return table.reset_index(drop=True)


def atlas_of(config: "PreprocessConfig") -> Atlas:
    """The atlas ``config`` names, checked (a user atlas is also registered with :mod:`.templates`).

    Raises
    ------
    ConfigError
        If a user atlas's files changed since the config recorded their hash, its table does
        not have ``fmri_n_rois`` rows, or its image is not a 3-D integer label image holding
        every label of the table.
    """
    from . import templates

    if config.fmri_atlas_image is None:
        return Atlas(config.fmri_atlas, templates.atlas_path(config.fmri_atlas),
                     templates.atlas_labels(config.fmri_atlas), shipped=True)
    image, labels = Path(config.fmri_atlas_image), Path(config.fmri_atlas_labels or "")
    sha = atlas_sha256(image, labels)
    if config.fmri_atlas_sha256 is not None and sha != config.fmri_atlas_sha256:
        raise ConfigError(
            f"fMRI atlas {config.fmri_atlas}: the label image or table changed since the model recorded it "
            "(content hash mismatch)", image)
    checked = (config.fmri_atlas, str(image), str(labels), sha, config.fmri_n_rois)
    if checked not in _CHECKED:  # the image check reads every voxel: once per process and content
        table = read_label_table(labels)
        if len(table) != config.fmri_n_rois:
            raise ConfigError(
                f"fmri_n_rois={config.fmri_n_rois} does not match atlas {config.fmri_atlas!r} "
                f"({len(table)} ROIs in its label table)", labels)
        _check_label_image(image, table)
        _CHECKED.add(checked)
    templates.register_atlas(config.fmri_atlas, image, labels)
    return Atlas(config.fmri_atlas, image, templates.atlas_labels(config.fmri_atlas), shipped=False, sha256=sha)


def _check_label_image(path: Path, table: pd.DataFrame) -> None:
    import nibabel as nib

    try:
        img = load_spatial_image(str(path))
        data = np.asarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - any unreadable image
        raise ConfigError(f"not a readable NIfTI label image ({type(exc).__name__}: {exc})", path) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ConfigError(f"an atlas label image must be 3-D, this one has shape {tuple(data.shape)}", path)
    if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
        raise ConfigError("an atlas label image must hold integer labels", path)
    absent = sorted(set(table["index"].tolist()) - set(np.unique(data).astype(np.int64).tolist()))
    if absent:
        raise ConfigError(
            f"{len(absent)} label(s) of the label table have no voxel in the label image (first: {absent[:5]})", path)


def copy_atlas_files(preprocess: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Copy a user atlas's two files into ``folder / ATLAS_FOLDER``; paths in the result relative to ``folder``.

    A config of a shipped atlas is returned unchanged.
    """
    if not preprocess.get(_IMAGE_KEY):
        return dict(preprocess)
    out = dict(preprocess)
    target = Path(folder) / ATLAS_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    for key, stem in ((_IMAGE_KEY, "labels_image"), (_LABELS_KEY, "labels_table")):
        source = Path(preprocess[key])
        suffix = ".nii.gz" if source.name.lower().endswith(".nii.gz") else source.suffix
        shutil.copyfile(source, target / f"{stem}{suffix}")
        out[key] = f"{ATLAS_FOLDER}/{stem}{suffix}"
    return out


def atlas_paths_in(preprocess: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The inverse of :func:`copy_atlas_files`: relative atlas paths made absolute under ``folder``."""
    out = dict(preprocess)
    for key in (_IMAGE_KEY, _LABELS_KEY):
        value = out.get(key)
        if value and not Path(value).is_absolute():
            out[key] = str(Path(folder) / value)
    return out


def merge_label_images(
    images: Sequence["str | Path"], tables: Sequence["str | Path"], out_image: "str | Path", out_table: "str | Path"
) -> pd.DataFrame:
    """Stack label images into one atlas (e.g. Tian-III subcortex then Schaefer-400 cortex).

    The images are resampled (nearest neighbour) to the first one's grid; the labels of image
    ``k`` are renumbered after those of the images before it, in the order of its table, and
    the tables are concatenated in the same order. Where two images label the same voxel the
    earlier one wins. Both outputs are written atomically.

    Returns
    -------
    pandas.DataFrame
        The merged label table (``index`` 1..N, ``name``, ``network``, ``source``).
    """
    import nibabel as nib
    from nilearn.image import resample_to_img

    from ..io_utils import atomic_path

    if not images or len(images) != len(tables):
        raise ConfigError("merge_label_images: give one label table per label image")
    reference = load_spatial_image(str(images[0]))
    merged = np.zeros(reference.shape[:3], dtype=np.int32)
    rows, offset = [], 0
    for image, table_path in zip(images, tables):
        table = read_label_table(table_path)
        img = load_spatial_image(str(image))
        if img.shape[:3] != reference.shape[:3] or not np.allclose(img.affine, reference.affine, atol=1e-3):
            img = resample_to_img(img, reference, interpolation="nearest", force_resample=True, copy_header=True)
        data = np.asarray(img.dataobj).astype(np.int64).reshape(reference.shape[:3])
        lut = np.zeros(max(int(data.max()), int(table["index"].max())) + 1, dtype=np.int32)
        lut[table["index"].to_numpy()] = np.arange(1, len(table) + 1) + offset
        values = lut[np.clip(data, 0, None)]
        free = merged == 0
        merged[free] = values[free]
        rows.append(table.assign(index=np.arange(1, len(table) + 1) + offset, source=Path(image).name)
                    [["index", "name", "network", "source"]])
        offset += len(table)
    out = pd.concat(rows, ignore_index=True)
    with atomic_path(out_image) as tmp:
        nib.save(nib.Nifti1Image(merged, reference.affine), str(tmp))
    with atomic_path(out_table) as tmp:
        out.to_csv(tmp, sep="\t", index=False)
    return out
