"""Splits that keep every participant on one side: a train/held-out split and stratified k folds.

A sample is one visit (``sub-X_ses-M000``); its *group* is the participant (``sub-X``). Two
visits of one person share their anatomy, genotype and much of their history, so a model
that saw one visit must never be scored on another: every split here groups by participant.

When every participant has exactly one sample (the classic one-folder-per-subject cohort)
the groups are trivially respected and the splits are exactly the ungrouped ones used
before sessions existed (``train_test_split`` / ``StratifiedKFold`` with the same seed), so
results on such cohorts reproduce. With repeated participants the splits come from
scikit-learn's ``StratifiedGroupKFold`` (stratified by label, grouped by participant).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from ..errors import ConfigError

__all__ = ["grouped_holdout", "grouped_kfold", "groups_are_singletons", "max_grouped_folds"]

#: (train index, test index) pairs.
Folds = list[tuple[np.ndarray, np.ndarray]]


def groups_are_singletons(groups: Sequence[str]) -> bool:
    """Whether no participant has more than one sample."""
    return len(set(groups)) == len(groups)


def max_grouped_folds(labels: np.ndarray, groups: Sequence[str]) -> int:
    """The most folds in which every class can reach a test part: its number of participants (least populated class)."""
    labels = np.asarray(labels)
    per_class = [len({g for g, y in zip(groups, labels) if y == c}) for c in np.unique(labels)]
    return int(min(per_class)) if per_class else 0


def _grouped_splitter(folds: int, seed: int) -> StratifiedGroupKFold:
    return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)


def grouped_kfold(labels: np.ndarray, groups: Sequence[str], folds: int, seed: int) -> Folds:
    """Stratified ``folds``-fold split in which no participant is in a test part and its training part.

    Parameters
    ----------
    labels : ndarray of int
        Class of each sample.
    groups : sequence of str
        Participant of each sample.
    folds : int
    seed : int
        Shuffling seed.

    Raises
    ------
    ConfigError
        If there are fewer participants than folds.
    """
    labels = np.asarray(labels)
    groups = list(groups)
    if len(groups) != len(labels):
        raise ValueError("one group per sample is needed")
    if groups_are_singletons(groups):
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(labels)), labels))
    n_groups = len(set(groups))
    if folds > n_groups:
        raise ConfigError(f"{folds} folds need at least {folds} participants; the samples come from {n_groups}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return list(_grouped_splitter(folds, seed).split(np.zeros(len(labels)), labels, groups))


def grouped_holdout(
    labels: np.ndarray, groups: Sequence[str], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split off about ``fraction`` of the samples, whole participants at a time, stratified by label.

    Returns
    -------
    keep, held : ndarray of int
        Sorted sample indices of the two parts.

    Notes
    -----
    With repeated participants the held-out part is a test part of a
    ``StratifiedGroupKFold`` with ``round(1 / fraction)`` folds (at least 2, at most the
    number of participants), so its size is ``fraction`` up to the granularity of whole
    participants: the first fold that leaves every class on both sides (else on the kept
    side), so that a small cohort never trains on one class.
    """
    labels = np.asarray(labels)
    groups = list(groups)
    index = np.arange(len(labels))
    if groups_are_singletons(groups):
        stratify = labels if len(labels) and min(np.bincount(labels)) >= 2 else None
        keep, held = train_test_split(index, test_size=fraction, random_state=seed, stratify=stratify)
        return np.sort(keep), np.sort(held)
    n_groups = len(set(groups))
    if n_groups < 2:
        raise ConfigError("a held-out split needs samples of at least 2 participants; all come from one")
    folds = int(min(max(2, round(1.0 / fraction)), n_groups))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        candidates = list(_grouped_splitter(folds, seed).split(index, labels, groups))
    classes = set(labels.tolist())

    def quality(split: tuple[np.ndarray, np.ndarray]) -> int:
        keep, held = split
        return 2 * (set(labels[keep].tolist()) == classes) + (set(labels[held].tolist()) == classes)

    keep, held = max(candidates, key=quality)  # the first fold with every class on both sides, if any
    return np.sort(keep), np.sort(held)
