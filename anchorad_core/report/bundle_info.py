"""What the report says about the model bundle: from the diagnosis and the bundle's manifest."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from ..bundle import Bundle
    from ..inference import Diagnosis


@dataclass(frozen=True)
class BundleInfo:
    """The bundle's identity and provenance as the report states them (``None``: not known).

    ``provenance`` is the manifest's JSON record (``training_data``, ``synthetic_data``, ``notes``);
    ``backbones`` maps each modality to its backbone family; ``note_fields`` is what the training
    notes contained (:mod:`anchorad_core.data.note_fields`).
    """

    path: str | None = None
    hash: str | None = None
    format_version: object = None
    provenance: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    created: str | None = None
    anchorad_version: str | None = None
    training_subjects: int | None = None
    backbones: dict[str, str] = field(default_factory=dict)
    note_fields: dict[str, Any] | None = None

    @classmethod
    def of(cls, diagnosis: "Diagnosis", bundle: "Bundle | Mapping[str, Any] | None" = None) -> "BundleInfo":
        """What ``diagnosis.bundle`` records, completed by ``bundle`` (a loaded bundle or its manifest)."""
        info = dict(getattr(diagnosis, "bundle", {}) or {})
        if bundle is not None:
            manifest = getattr(bundle, "manifest", None)
            if manifest is None and isinstance(bundle, Mapping):
                manifest = bundle
            if manifest:
                info.setdefault("format_version", manifest.get("format_version"))
                info.setdefault("provenance", manifest.get("provenance", {}))
                info["task"] = manifest.get("task")
                info["created"] = manifest.get("created")
                info["anchorad_version"] = manifest.get("anchorad_version")
                info["training_subjects"] = manifest.get("training_subjects")
                info["note_fields"] = manifest.get("note_fields")
                backbones = (manifest.get("config") or {}).get("backbones") or {}
                info["backbones"] = {
                    m: (b.get("family") or b.get("preset") or "?") if isinstance(b, Mapping) else str(b)
                    for m, b in backbones.items()
                }
            path, bundle_hash = getattr(bundle, "path", None), getattr(bundle, "hash", None)
            if path is not None:
                info["path"] = str(path)
            if bundle_hash:
                info["hash"] = bundle_hash
        return cls(
            path=None if info.get("path") is None else str(info["path"]),
            hash=None if info.get("hash") is None else str(info["hash"]),
            format_version=info.get("format_version"),
            provenance=dict(info.get("provenance") or {}),
            task=info.get("task"),
            created=info.get("created"),
            anchorad_version=info.get("anchorad_version"),
            training_subjects=info.get("training_subjects"),
            backbones=dict(info.get("backbones") or {}),
            note_fields=info.get("note_fields"),
        )
