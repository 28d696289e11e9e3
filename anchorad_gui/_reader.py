"""npe2 reader: a ``sub-*`` subject folder -> napari layers (T1 and fMRI).

* the T1 (``anat/*_T1w.nii[.gz]``, read and validated by the core's
  :func:`~anchorad_core.data.load_t1`) becomes a grey image layer in world millimetres,
  reoriented to RAS+ and shown as axial slices (see :mod:`._volumes`);
* a 4-D BOLD run becomes a ``(t, z, y, x)`` image layer with a time slider;
* an ROI time-series table (read by the core's :func:`~anchorad_core.data.read_roi_table`)
  is painted into the shipped Schaefer-400 atlas as a lazy ``(t, z, y, x)`` layer (one frame
  painted at a time), so the series can be played over the brain with the time slider.

Clinical text and genetics have no image; the Subject panel shows them. A folder that is not
a subject folder is left to other readers (the reader returns ``None``).

Every layer carries ``metadata["anchorad"]["folder"]``: when napari adds them (File > Open
Folder, drag and drop, File > Open Sample), the viewer's AnchorAD session adopts the folder as
*the* subject and replaces the previous subject's layers (see :mod:`._session`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["napari_get_reader", "read_subject_layers", "is_subject_folder", "t1_layer", "fmri_layer"]

LayerData = tuple[Any, dict[str, Any], str]


def is_subject_folder(path: "str | Path") -> bool:
    """A directory named ``sub-*`` or holding ``anat/``, ``func/``, ``clinical/`` or ``genetics/``."""
    p = Path(path)
    if not p.is_dir():
        return False
    if p.name.startswith("sub-"):
        return True
    return any((p / d).is_dir() for d in ("anat", "func", "clinical", "genetics"))


def napari_get_reader(path: "str | list[str]") -> "Callable[[Any], list[LayerData]] | None":
    """npe2 ``get_reader`` hook: a reader for subject folders, else ``None``."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not is_subject_folder(path):
        return None
    return _read_into_session


def _read_into_session(path: "str | list[str]", **_: Any) -> list[LayerData]:
    """The reader napari calls: the layers, with the current viewer's session listening for them."""
    watch_current_viewer()
    return read_subject_layers(path)


def watch_current_viewer() -> None:
    """Make sure the current viewer has an AnchorAD session (it adopts the subject napari adds)."""
    try:
        import napari

        from ._session import session_for

        viewer = napari.current_viewer()
        if viewer is not None:
            session_for(viewer)
    except Exception:  # no Qt / no viewer: plain layers
        pass


def read_subject_layers(path: "str | list[str]") -> list[LayerData]:
    """Layers of one subject folder (T1 first, then fMRI), as napari ``LayerData`` tuples.

    Raises
    ------
    anchorad_core.errors.InputDataError
        If the folder or one of its image files is unreadable (napari shows the message).
    """
    from anchorad_core import InputDataError, find_subject_files

    if isinstance(path, (list, tuple)):
        path = path[0]
    folder = Path(path).expanduser()
    files = find_subject_files(folder)
    layers: list[LayerData] = []
    if files.smri is not None:
        layers.append(t1_layer(files.smri, folder.name))
    if files.fmri is not None:
        layers.append(fmri_layer(files.fmri, folder.name))
    if not layers and not any(files.has(m) for m in _modalities()):
        raise InputDataError("no AnchorAD subject data found (anat/, func/, clinical/, genetics/)", folder)
    for _, kwargs, _ in layers:
        kwargs["metadata"]["anchorad"]["folder"] = str(folder.resolve())
    return layers


def _modalities():
    from anchorad_core import ALL_MODALITIES

    return ALL_MODALITIES


def t1_layer(path: "str | Path", subject_id: str = "") -> LayerData:
    """The T1 as an image ``LayerData`` (RAS+, axial, mm)."""
    from anchorad_core import load_t1

    from ._volumes import volume_layer_data

    data, affine, _ = load_t1(path)
    arr, kwargs = volume_layer_data(data, affine)
    lo, hi = (float(v) for v in np.percentile(arr, [0.5, 99.5]))
    kwargs.update(
        name=layer_name(subject_id, "T1"),
        colormap="gray",
        contrast_limits=(lo, hi if hi > lo else lo + 1.0),
        metadata={"anchorad": {"role": "t1", "subject": subject_id, "path": str(path), "affine": np.asarray(affine).tolist()}},
    )
    return arr, kwargs, "image"


def fmri_layer(path: "str | Path", subject_id: str = "") -> LayerData:
    """The fMRI as a 4-D ``(t, z, y, x)`` image ``LayerData`` (BOLD run or ROI table painted into the atlas)."""
    from anchorad_core import is_roi_table_name

    if is_roi_table_name(path):
        return _roi_table_layer(Path(path), subject_id)
    return _bold_layer(Path(path), subject_id)


def _bold_layer(path: Path, subject_id: str) -> LayerData:
    import nibabel as nib

    from anchorad_core import InputDataError, check_gzip

    from ._volumes import volume_layer_data

    check_gzip(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:  # nibabel raises many types for bad files
        raise InputDataError(f"not a readable NIfTI image ({type(exc).__name__}: {exc})", path) from None
    if data.ndim != 4:
        raise InputDataError(f"a BOLD run must be 4-D (x, y, z, time), this one is {data.ndim}-D", path)
    zooms = img.header.get_zooms()
    tr = float(zooms[3]) if len(zooms) > 3 and zooms[3] > 0 else None
    arr, kwargs = volume_layer_data(data, img.affine, time_step=tr)
    sample = arr[arr.shape[0] // 2]
    lo, hi = (float(v) for v in np.percentile(sample, [1, 99.5]))
    kwargs.update(
        name=layer_name(subject_id, "fMRI"),
        colormap="viridis",
        contrast_limits=(lo, hi if hi > lo else lo + 1.0),
        opacity=0.7,
        blending="additive",
        visible=False,
        metadata={"anchorad": {"role": "fmri", "kind": "bold", "subject": subject_id, "path": str(path)}},
    )
    return arr, kwargs, "image"


def _roi_table_layer(path: Path, subject_id: str) -> LayerData:
    import dask.array as da

    from anchorad_core import atlas_image, read_roi_table

    from ._volumes import LazyPaintedSeries, spatial_kwargs, to_ras

    series, info = read_roi_table(path)
    atlas = atlas_image("schaefer400_17n")  # read_roi_table returns the series in this atlas's order
    labels, atlas_affine = to_ras(np.asarray(atlas.dataobj), atlas.affine)
    labels_zyx = np.ascontiguousarray(labels.transpose(2, 1, 0))
    painted = LazyPaintedSeries(series, labels_zyx)
    lazy = da.from_array(painted, chunks=(1, *labels_zyx.shape), asarray=False, meta=np.zeros((0, 0, 0, 0), np.float32))
    tr = info.get("repetition_time")
    kwargs = spatial_kwargs(atlas_affine, time_step=tr)
    kwargs.update(
        name=layer_name(subject_id, "fMRI"),
        colormap="viridis",
        contrast_limits=painted.frame_range(),
        opacity=0.6,
        blending="additive",
        visible=False,
        metadata={
            "anchorad": {
                "role": "fmri",
                "kind": "roi_table",
                "subject": subject_id,
                "path": str(path),
                "atlas": info.get("atlas"),
                "n_frames": int(series.shape[1]),
            }
        },
    )
    return lazy, kwargs, "image"


def layer_name(subject_id: str, what: str) -> str:
    """Layer name used for a subject's data, e.g. ``"sub-001 T1"``."""
    return f"{subject_id} {what}".strip()
