"""Preprocessing configuration: the single source of truth for how raw files become inputs.

A :class:`PreprocessConfig` is stored in every model bundle's config JSON (``to_dict``) and
read back with ``from_dict``, so a trained model always preprocesses new subjects exactly as
its training cohort was preprocessed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import ConfigError

__all__ = ["PreprocessConfig", "KNOWN_ATLASES"]

#: Atlases AnchorAD ships (name -> number of ROIs).
KNOWN_ATLASES: dict[str, int] = {"schaefer400_17n": 400}

_FRAME_POLICIES = ("crop", "resample")
_DNA_OVERLENGTH = ("error", "truncate")


@dataclass(frozen=True)
class PreprocessConfig:
    """How each modality is turned into a model input.

    Parameters
    ----------
    smri_cube : int
        Edge of the cubic sMRI input in voxels (the cube is ``smri_cube**3``).
    smri_spacing_mm : float or None
        Isotropic voxel size of the cube in mm. ``None`` derives it per image from the
        brain (foreground) extent so that the whole foreground fits the cube:
        ``spacing = max(extent_mm) / smri_cube``.
    smri_foreground_threshold : float
        Fraction of the image's 99th intensity percentile above which a voxel counts as
        foreground for the crop.
    smri_percentiles : tuple of float
        Lower/upper intensity percentiles mapped to 0 and 1 (values outside are clipped).
    fmri_n_rois : int
        Number of ROIs the fMRI input has (must match the atlas).
    fmri_frames : int
        Number of time frames of the fMRI input.
    fmri_atlas : str
        Atlas name; ``"schaefer400_17n"`` is the shipped Schaefer-2018 400-parcel
        17-network atlas. With ``fmri_atlas_image`` it names the user's atlas (any name but a
        shipped one; ROI-table sidecars must give the same ``"Atlas"``).
    fmri_frame_policy : {"crop", "resample"}
        ``"crop"`` keeps the central ``fmri_frames`` frames (start index
        ``(T - fmri_frames) // 2``); ``"resample"`` linearly interpolates the whole run
        to ``fmri_frames`` frames. A run shorter than ``fmri_frames`` is an error in both
        cases (no frames are invented).
    fmri_min_roi_coverage : float
        Minimum fraction of atlas ROIs a 4-D BOLD image must cover (ROIs outside the
        image's field of view are filled with zeros and listed in the subject warnings).
    fmri_atlas_image, fmri_atlas_labels : str or None
        A user atlas (:mod:`.atlas`): a 3-D label NIfTI and its tab-separated label table
        (``index``, ``name``, optional ``network``; one row per ROI in ROI order). Both or
        neither; ``fmri_n_rois`` must equal the table's rows.
    fmri_atlas_sha256 : str or None
        SHA-256 of the user atlas's two files, computed when the config is made and checked
        whenever the atlas is read (a bundle's atlas cannot change under it).
    dna_max_length : int
        Longest DNA sequence accepted (6-mer tokenisers: 6000 bp = 1000 tokens).
    dna_overlength : {"error", "truncate"}
        What to do with a longer sequence: raise, or keep the first ``dna_max_length``
        bases (with a warning).
    dna_reference : str
        Reference sequence APOE genotypes and VCF variants are expanded on.
    clinical_exclude : tuple of str
        Structured clinical fields left out of every rendered note (JSON or visit table),
        canonical names sorted; ``"diagnostic"`` stands for the scores the diagnosis is made
        from (:data:`~anchorad_core.data.clinical.DIAGNOSTIC_SCORES`: MMSE, CDR-SB, CDR
        global) and ``"cdr"`` for both CDR scores. Free-text notes are used as written.
    """

    smri_cube: int = 64
    smri_spacing_mm: float | None = None
    smri_foreground_threshold: float = 0.1
    smri_percentiles: tuple[float, float] = (5.0, 95.0)
    fmri_n_rois: int = 400
    fmri_frames: int = 48
    fmri_atlas: str = "schaefer400_17n"
    fmri_frame_policy: str = "crop"
    fmri_min_roi_coverage: float = 0.5
    fmri_atlas_image: str | None = None
    fmri_atlas_labels: str | None = None
    fmri_atlas_sha256: str | None = None
    dna_max_length: int = 6000
    dna_overlength: str = "truncate"
    dna_reference: str = "apoe_cds_fragment"
    clinical_exclude: tuple[str, ...] = ()
    version: int = field(default=1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "clinical_exclude", _clinical_fields(self.clinical_exclude))
        if not isinstance(self.smri_cube, int) or self.smri_cube < 8:
            raise ConfigError(f"smri_cube must be an integer >= 8, got {self.smri_cube!r}")
        if self.smri_spacing_mm is not None and not (float(self.smri_spacing_mm) > 0):
            raise ConfigError(f"smri_spacing_mm must be > 0 or None, got {self.smri_spacing_mm!r}")
        lo, hi = self.smri_percentiles
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"smri_percentiles must satisfy 0 <= lower < upper <= 100, got {self.smri_percentiles!r}")
        self._check_atlas()
        if not isinstance(self.fmri_frames, int) or self.fmri_frames < 2:
            raise ConfigError(f"fmri_frames must be an integer >= 2, got {self.fmri_frames!r}")
        if self.fmri_frame_policy not in _FRAME_POLICIES:
            raise ConfigError(f"fmri_frame_policy must be one of {_FRAME_POLICIES}, got {self.fmri_frame_policy!r}")
        if not 0 < self.fmri_min_roi_coverage <= 1:
            raise ConfigError("fmri_min_roi_coverage must be in (0, 1]")
        if self.dna_max_length < 6:
            raise ConfigError("dna_max_length must be >= 6")
        if self.dna_overlength not in _DNA_OVERLENGTH:
            raise ConfigError(f"dna_overlength must be one of {_DNA_OVERLENGTH}, got {self.dna_overlength!r}")

    def _check_atlas(self) -> None:
        """The shipped atlas and its ROI count, or a complete user atlas (its hash recorded)."""
        if self.fmri_atlas_image is None and self.fmri_atlas_labels is None:
            if self.fmri_atlas not in KNOWN_ATLASES:
                raise ConfigError(
                    f"unknown fmri_atlas {self.fmri_atlas!r}; shipped atlases: {', '.join(KNOWN_ATLASES)} "
                    "(or bring your own: fmri_atlas_image and fmri_atlas_labels)"
                )
            if self.fmri_n_rois != KNOWN_ATLASES[self.fmri_atlas]:
                raise ConfigError(
                    f"fmri_n_rois={self.fmri_n_rois} does not match atlas {self.fmri_atlas!r} "
                    f"({KNOWN_ATLASES[self.fmri_atlas]} ROIs)"
                )
            return
        if self.fmri_atlas_image is None or self.fmri_atlas_labels is None:
            raise ConfigError("a user fMRI atlas needs both fmri_atlas_image (label NIfTI) and "
                              "fmri_atlas_labels (label table)")
        if self.fmri_atlas in KNOWN_ATLASES:
            raise ConfigError(f"fmri_atlas {self.fmri_atlas!r} is a shipped atlas; give your atlas its own name")
        if not isinstance(self.fmri_n_rois, int) or self.fmri_n_rois < 1:
            raise ConfigError(f"fmri_n_rois must be a positive integer, got {self.fmri_n_rois!r}")
        object.__setattr__(self, "fmri_atlas_image", str(self.fmri_atlas_image))
        object.__setattr__(self, "fmri_atlas_labels", str(self.fmri_atlas_labels))
        from .templates import register_atlas

        register_atlas(self.fmri_atlas, self.fmri_atlas_image, self.fmri_atlas_labels)  # maps can paint into it
        if self.fmri_atlas_sha256 is None:
            from .atlas import atlas_of, atlas_sha256

            object.__setattr__(self, "fmri_atlas_sha256", atlas_sha256(self.fmri_atlas_image, self.fmri_atlas_labels))
            atlas_of(self)  # checks the table's ROI count and the image once, when the atlas is chosen

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["smri_percentiles"] = list(self.smri_percentiles)
        out["clinical_exclude"] = list(self.clinical_exclude)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PreprocessConfig":
        """Build from :meth:`to_dict` output; unknown keys are a :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown preprocessing option(s): {', '.join(unknown)}")
        kwargs = dict(data)
        if "smri_percentiles" in kwargs:
            kwargs["smri_percentiles"] = tuple(float(v) for v in kwargs["smri_percentiles"])
        if "clinical_exclude" in kwargs and not isinstance(kwargs["clinical_exclude"], (list, tuple)):
            raise ConfigError("clinical_exclude must be a list of clinical field names, e.g. [\"mmse\", \"cdr_sb\"]")
        try:
            return cls(**kwargs)
        except TypeError as exc:  # pragma: no cover - defensive
            raise ConfigError(f"invalid preprocessing config: {exc}") from None

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def fingerprint(self, *fields_: str) -> str:
        """Short hash of the whole config, or of only ``fields_`` (for per-modality caches)."""
        data = self.to_dict()
        if fields_:
            data = {k: data[k] for k in fields_}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    #: Fields that influence each modality (cache keys; clinical text is never cached).
    SMRI_FIELDS = ("smri_cube", "smri_spacing_mm", "smri_foreground_threshold", "smri_percentiles", "version")
    FMRI_FIELDS = ("fmri_n_rois", "fmri_frames", "fmri_atlas", "fmri_frame_policy", "fmri_min_roi_coverage",
                   "fmri_atlas_sha256", "version")


def _clinical_fields(names: "tuple[str, ...] | list[str] | str") -> tuple[str, ...]:
    """Canonical, sorted, unique clinical field names; expands ``diagnostic`` and ``cdr``."""
    from .clinical import DIAGNOSTIC_SCORES, canonical_field

    if isinstance(names, str):
        names = [n for n in names.split(",")]
    out: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"clinical_exclude: field names must be non-empty strings, got {name!r}")
        key = canonical_field(name)
        if key == "diagnostic":
            out.update(DIAGNOSTIC_SCORES)
        elif key == "cdr":
            out.update(("cdr_sb", "cdr_global"))
        else:
            out.add(key)
    return tuple(sorted(out))
