"""Binary diagnostic tasks (``NC-AD``, ``NC-MCI``, ``sMCI-pMCI``, any ``A-B`` pair) and labels.

Labels are case-insensitive and have a small hierarchy: ``MCI`` contains ``sMCI`` (stable),
``pMCI`` (progressive), ``EMCI`` and ``LMCI``, so the task ``NC-MCI`` uses sMCI and pMCI
subjects as MCI. Common aliases are folded: ``CN``/``HC``/``control`` -> ``NC``. Any other
label (``PD``, ``FTD``...) is used as written. Labels must not contain ``-``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["Task", "canonical_label", "label_ancestors", "label_is_a", "LABEL_PARENTS"]

_ALIASES = {
    "nc": "NC", "cn": "NC", "hc": "NC", "control": "NC", "controls": "NC", "normal": "NC",
    "ad": "AD", "dementia": "AD",
    "mci": "MCI", "smci": "sMCI", "pmci": "pMCI", "emci": "EMCI", "lmci": "LMCI",
    "pd": "PD",
}
#: child label -> parent label
LABEL_PARENTS: dict[str, str] = {"sMCI": "MCI", "pMCI": "MCI", "EMCI": "MCI", "LMCI": "MCI"}


def canonical_label(text: str) -> str:
    """Canonical spelling of a diagnosis label (``cn`` -> ``NC``, ``smci`` -> ``sMCI``)."""
    key = str(text).strip()
    return _ALIASES.get(key.lower(), key)


def label_ancestors(label: str) -> tuple[str, ...]:
    """``label`` itself followed by its ancestors (``pMCI`` -> ``("pMCI", "MCI")``)."""
    out = [canonical_label(label)]
    while out[-1] in LABEL_PARENTS:
        out.append(LABEL_PARENTS[out[-1]])
    return tuple(out)


def label_is_a(label: str, target: str) -> bool:
    """Whether a subject labelled ``label`` belongs to class ``target`` (hierarchy-aware)."""
    return canonical_label(target) in label_ancestors(label)


@dataclass(frozen=True)
class Task:
    """A binary task: ``negative`` (y = 0) versus ``positive`` (y = 1), e.g. ``NC-AD``."""

    negative: str
    positive: str

    def __post_init__(self) -> None:
        neg, pos = canonical_label(self.negative), canonical_label(self.positive)
        object.__setattr__(self, "negative", neg)
        object.__setattr__(self, "positive", pos)
        if not neg or not pos:
            raise ConfigError("a task needs two non-empty labels, e.g. 'NC-AD'")
        if label_is_a(neg, pos) or label_is_a(pos, neg):
            raise ConfigError(f"task {neg}-{pos}: one class contains the other, so it is not a binary task")

    @classmethod
    def parse(cls, text: "str | Task") -> "Task":
        """Parse ``"NC-AD"``, ``"NC vs AD"``, ``"nc_vs_ad"``, ``"sMCI/pMCI"``; the second label is positive."""
        if isinstance(text, Task):
            return text
        parts = [p.strip() for p in re.split(r"\s*(?:\bvs\.?\b|_vs_|-|/|:)\s*", str(text).strip(), flags=re.I) if p.strip()]
        if len(parts) != 2:
            raise ConfigError(f"cannot read task {text!r}; write two labels like 'NC-AD', 'NC-MCI' or 'sMCI-pMCI'")
        return cls(parts[0], parts[1])

    @property
    def name(self) -> str:
        """``"NEG-POS"``."""
        return f"{self.negative}-{self.positive}"

    @property
    def classes(self) -> tuple[str, str]:
        """``(negative, positive)``: class names indexed by y."""
        return (self.negative, self.positive)

    def target(self, label: "str | None") -> int | None:
        """y for a subject label: 0, 1, or ``None`` if the subject is not part of the task."""
        if label is None:
            return None
        if label_is_a(label, self.positive):
            return 1
        if label_is_a(label, self.negative):
            return 0
        return None

    def __str__(self) -> str:
        return self.name
