"""The four modalities AnchorAD combines and their canonical names."""
from __future__ import annotations

from enum import Enum
from typing import Mapping, TypeVar

V = TypeVar("V")


class Modality(str, Enum):
    """A data modality. The value is the name used in files, JSON and the CLI.

    Dictionaries in memory are keyed by the modality itself; its name appears only where data
    leave for JSON (:func:`keys_to_json`) or come back (:func:`keys_from_json`). Being a ``str``
    (first in the bases), a modality equals its name and hashes like it, so ``d["smri"]`` still
    finds ``d[Modality.SMRI]``; but ``str()`` and f-strings give ``Modality.SMRI``: write
    ``m.value`` in text.
    """

    SMRI = "smri"
    FMRI = "fmri"
    CLINICAL = "clinical"
    GENETICS = "genetics"

    # ``title`` shadows ``str.title`` on purpose: it is the modality's display name, and a
    # modality's value is never title-cased as a plain string.
    @property
    def title(self) -> str:  # type: ignore[override]  # a property, not str.title(): see above
        """Human-readable name for tables and reports."""
        return _TITLES[self]

    @classmethod
    def parse(cls, name: "str | Modality") -> "Modality":
        """Return the modality called ``name`` (case-insensitive).

        Raises
        ------
        ValueError
            If ``name`` is not one of ``smri``, ``fmri``, ``clinical``, ``genetics``.
        """
        if isinstance(name, Modality):
            return name
        key = str(name).strip().lower()
        for modality in cls:
            if modality.value == key:
                return modality
        raise ValueError(
            f"unknown modality {name!r}; expected one of {', '.join(m.value for m in cls)}"
        )


_TITLES = {
    Modality.SMRI: "sMRI",
    Modality.FMRI: "fMRI",
    Modality.CLINICAL: "Clinical text",
    Modality.GENETICS: "Genetics",
}

#: Canonical order used everywhere (tables, Q-former blocks, bundles).
ALL_MODALITIES: tuple[Modality, ...] = (
    Modality.SMRI,
    Modality.FMRI,
    Modality.CLINICAL,
    Modality.GENETICS,
)


def parse_modalities(names: "str | list[str] | tuple[str, ...] | None") -> tuple[Modality, ...]:
    """Parse a comma-separated string or a list of names into modalities in canonical order."""
    if names is None:
        return ALL_MODALITIES
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    chosen = {Modality.parse(n) for n in names}
    return tuple(m for m in ALL_MODALITIES if m in chosen)


def keys_to_json(mapping: "Mapping[Modality, V]") -> dict[str, V]:
    """``mapping`` with each modality key written as its value (``"smri"``), for JSON files.

    In memory, dictionaries are keyed by :class:`Modality`; strings appear only at the JSON
    boundary (bundle manifests, CLI ``--json`` output, cached results), through this function
    and :func:`keys_from_json`.
    """
    return {Modality.parse(m).value: v for m, v in mapping.items()}


def keys_from_json(mapping: "Mapping[str, V]") -> dict[Modality, V]:
    """Inverse of :func:`keys_to_json`: modality names (any case) back to :class:`Modality` keys."""
    return {Modality.parse(name): v for name, v in mapping.items()}
