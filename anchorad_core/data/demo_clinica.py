"""Synthetic longitudinal demo cohort in the Clinica / ClinicaDL layout (2-3 visits per person).

:func:`make_clinica_demo_cohort` writes SYNTHETIC participants with the subject generators of
:mod:`.demo` (same templates, same designed signal), one generated subject per visit::

    <out>/participants.tsv                          participant_id, sex, education_years
    <out>/sub-01/ses-M000/anat/sub-01_ses-M000_T1w.nii.gz
    <out>/sub-01/ses-M000/func/sub-01_ses-M000_task-rest_atlas-schaefer400_17n_timeseries.npy (+ .json)
    <out>/sub-01/genetics/sub-01_apoe.txt           once per person (APOE does not change)
    <out>/sub-01/sub-01_sessions.tsv                session_id, age, MMSE, CDRSB (the clinical notes)
    <out>/phenotype/visits.csv                      ADNIMERGE-shaped: participant_id, VISCODE, M, DX, ...
    <out>/labels.tsv                                ClinicaDL-style labels derived from visits.csv

Trajectories (a quarter each): NC at every visit; stable MCI; MCI converting to AD at the
last imaging visit (pMCI before it, generated with the pMCI then the AD severity); AD at
every visit. Imaging visits are at months 0 and 24 or 36 (two visits) or 0, 12, 36 (three);
``visits.csv`` has one more, clinical-only visit 12 months after the last, so the label table
lists visits the cohort has no folder for (the loader skips them). ``labels.tsv`` is
:func:`.visit_labels.derive_labels` of ``visits.csv`` with a 36-month horizon. Nothing about a
real person is implied.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..io_utils import atomic_directory
from .demo import _fc_factors, _t1_template, _write_subject
from .templates import apoe_reference, template_path
from .visit_labels import derive_labels, read_visit_table, write_label_table

__all__ = ["make_clinica_demo_cohort", "ClinicaDemoInfo", "TRAJECTORIES"]

#: Trajectory -> diagnosis at each imaging visit (before the clinical-only last visit).
TRAJECTORIES = ("NC", "sMCI", "pMCI", "AD")
_VISIT_MONTHS = {2: ((0, 24), (0, 36)), 3: ((0, 12, 36),)}
_DX_WORD = {"NC": "CN", "MCI": "MCI", "AD": "Dementia"}


@dataclass
class ClinicaDemoInfo:
    """What :func:`make_clinica_demo_cohort` wrote."""

    root: Path
    participants: int
    sessions: int
    labels: dict[str, int]
    labels_tsv: Path
    visits_csv: Path
    seconds: float


def _plan(rng: np.random.Generator, n: int, sessions: tuple[int, ...]) -> list[dict[str, Any]]:
    """Trajectory, visit months, sex, baseline age of each participant."""
    kinds = [TRAJECTORIES[i % len(TRAJECTORIES)] for i in range(n)]
    kinds = [kinds[i] for i in rng.permutation(n)]
    plans = []
    for kind in kinds:
        k = int(rng.choice(sessions))
        options = _VISIT_MONTHS[k]
        months = list(options[int(rng.integers(len(options)))])
        plans.append({"kind": kind, "months": months, "sex": "F" if rng.random() < 0.55 else "M",
                      "age": int(rng.integers(62, 84))})
    return plans


def _visit_dx(kind: str, index: int, count: int) -> str:
    """Stage of the ``index``-th of ``count`` visits (the clinical-only visit is ``count - 1``)."""
    if kind == "NC":
        return "NC"
    if kind == "AD":
        return "AD"
    if kind == "pMCI":
        return "AD" if index >= count - 2 else "MCI"  # AD at the last imaging visit and after
    return "MCI"


def _generator_label(kind: str, dx: str) -> str:
    """Severity class handed to the demo subject generator."""
    if dx == "AD":
        return "AD"
    return {"NC": "NC", "sMCI": "sMCI", "pMCI": "pMCI"}[kind]


def _write_session(tmp: Path, pid: str, ses: str, label: str, seq: np.random.SeedSequence,
                   keep_genetics: bool) -> dict[str, Any]:
    """One visit: generate it as a demo subject, then move it into the session layout."""
    sid = f"{pid}_{ses}"
    staging = tmp / ".staging"
    row = _write_subject(staging, sid, label, seq)
    src = staging / sid
    clinical = src / "clinical" / f"{sid}_clinical.json"
    fields = json.loads(clinical.read_text()) if clinical.is_file() else None
    shutil.rmtree(src / "clinical", ignore_errors=True)  # the visit's note comes from sub-<id>_sessions.tsv
    genetics = src / "genetics"
    if genetics.is_dir() and keep_genetics:
        target = tmp / pid / "genetics"
        target.mkdir(parents=True, exist_ok=True)
        for f in genetics.iterdir():
            f.rename(target / f.name.replace(sid, pid))
    shutil.rmtree(genetics, ignore_errors=True)
    (tmp / pid).mkdir(parents=True, exist_ok=True)
    src.rename(tmp / pid / ses)
    return {"fields": fields, "dropped": row["dropped"]}


def make_clinica_demo_cohort(
    out: "str | Path",
    n_participants: int = 12,
    seed: int = 0,
    progress: Callable[[int, int, str], Any] | None = None,
    *,
    sessions: tuple[int, ...] = (2, 3),
    overwrite: bool = False,
    workers: int | None = None,
) -> ClinicaDemoInfo:
    """Write the synthetic longitudinal cohort of the module docstring (atomically).

    Parameters
    ----------
    out : str or Path
        Cohort root to create.
    n_participants : int
        Participants (>= 4; trajectories NC / sMCI / pMCI / AD in turn).
    seed : int
    progress : callable, optional
        ``progress(done, total, session)`` after each visit.
    sessions : tuple of int
        Numbers of imaging visits to draw from (2 and/or 3).
    overwrite : bool
        Replace an existing non-empty ``out``.
    workers : int, optional
        Threads (default: up to 2).
    """
    start = time.perf_counter()
    out = Path(out)
    if n_participants < 4:
        raise ConfigError(f"a longitudinal demo cohort needs at least 4 participants, got {n_participants}")
    if not sessions or any(k not in _VISIT_MONTHS for k in sessions):
        raise ConfigError(f"sessions must be drawn from {tuple(_VISIT_MONTHS)}, got {sessions!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"{out} already exists and is not empty (pass overwrite=True to replace it)")
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    _t1_template()
    _fc_factors()
    apoe_reference()
    plan_seq, *participant_seqs = np.random.SeedSequence(seed).spawn(n_participants + 1)
    plans = _plan(np.random.default_rng(plan_seq), n_participants, tuple(sessions))
    width = max(2, len(str(n_participants)))
    ids = [f"sub-{i + 1:0{width}d}" for i in range(n_participants)]
    jobs = []
    for pid, plan, seq in zip(ids, plans, participant_seqs):
        months = plan["months"]
        for k, (m, visit_seq) in enumerate(zip(months, seq.spawn(len(months)))):
            dx = _visit_dx(plan["kind"], k, len(months) + 1)
            jobs.append((pid, f"ses-M{m:03d}", m, dx, _generator_label(plan["kind"], dx), visit_seq, k == 0))

    import torch

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with atomic_directory(out, overwrite=True) as tmp:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(_write_session, tmp, pid, ses, label, seq, first)
                           for pid, ses, _, _, label, seq, first in jobs]
                written = []
                for i, fut in enumerate(futures):
                    written.append(fut.result())
                    if progress is not None:
                        progress(i + 1, len(jobs), f"{jobs[i][0]}_{jobs[i][1]}")
            shutil.rmtree(tmp / ".staging", ignore_errors=True)
            visits: list[dict[str, Any]] = []
            by_participant: dict[str, list[tuple[str, int, str, dict[str, Any]]]] = {}
            for (pid, ses, m, dx, _, _, _), result in zip(jobs, written):
                by_participant.setdefault(pid, []).append((ses, m, dx, result["fields"]))
            education: dict[str, Any] = {}
            for pid, plan in zip(ids, plans):
                rows = []
                for ses, m, dx, fields in by_participant[pid]:
                    age = round(plan["age"] + m / 12, 1)
                    mmse = fields["mmse"] if fields else "n/a"
                    cdr = fields["cdr_sb"] if fields else "n/a"
                    education.setdefault(pid, fields["education_years"] if fields else "n/a")
                    rows.append({"session_id": ses, "age": age, "MMSE": mmse, "CDRSB": cdr})
                    visits.append({"participant_id": pid, "VISCODE": "bl" if m == 0 else f"m{m:02d}", "M": m,
                                   "DX": _DX_WORD[dx], "AGE": age, "PTGENDER": plan["sex"], "MMSE": mmse,
                                   "CDRSB": cdr})
                last = plan["months"][-1] + 12  # a clinical-only visit: no imaging folder
                dx = _visit_dx(plan["kind"], len(plan["months"]), len(plan["months"]) + 1)
                visits.append({"participant_id": pid, "VISCODE": f"m{last:02d}", "M": last, "DX": _DX_WORD[dx],
                               "AGE": round(plan["age"] + last / 12, 1), "PTGENDER": plan["sex"],
                               "MMSE": "n/a", "CDRSB": "n/a"})
                pd.DataFrame(rows).to_csv(tmp / pid / f"{pid}_sessions.tsv", sep="\t", index=False)
            pd.DataFrame({"participant_id": ids, "sex": [p["sex"] for p in plans],
                          "education_years": [education[pid] for pid in ids]}).to_csv(
                tmp / "participants.tsv", sep="\t", index=False)
            (tmp / "phenotype").mkdir()
            visits_csv = tmp / "phenotype" / "visits.csv"
            pd.DataFrame(visits).to_csv(visits_csv, index=False)
            labels, _ = derive_labels(read_visit_table(visits_csv), 36)
            write_label_table(labels, tmp / "labels.tsv")
            (tmp / "dataset_description.json").write_text(json.dumps({
                "Name": "AnchorAD synthetic longitudinal demo cohort (SYNTHETIC subjects on real templates)",
                "BIDSVersion": "1.9.0", "DatasetType": "raw",
                "GeneratedBy": [{"Name": "anchorad_core.data.demo_clinica.make_clinica_demo_cohort",
                                 "Description": f"n={n_participants}, seed={seed}"}],
                "License": "Derived from Apache-2.0 / MIT / BSD-3-Clause templates; see LICENSES.md",
            }, indent=1) + "\n")
            (tmp / "README.md").write_text(
                "# AnchorAD longitudinal demo cohort — SYNTHETIC\n\n**Every participant here is SYNTHETIC**, "
                "generated by `anchorad_core.data.demo_clinica.make_clinica_demo_cohort` "
                f"(n = {n_participants}, seed = {seed}) in the Clinica / ClinicaDL layout from the templates "
                "of the demo cohort (see `LICENSES.md`). `labels.tsv` was derived from `phenotype/visits.csv` "
                "by `anchorad labels` (36-month horizon); train with `--labels labels.tsv`.\n",
                encoding="utf-8")
            shutil.copyfile(template_path("LICENSES.md"), tmp / "LICENSES.md")
    finally:
        torch.set_num_threads(torch_threads)
    counts = {str(k): int(v) for k, v in labels["diagnosis"].value_counts().items()}
    return ClinicaDemoInfo(root=out, participants=n_participants, sessions=len(jobs), labels=counts,
                           labels_tsv=out / "labels.tsv", visits_csv=out / "phenotype" / "visits.csv",
                           seconds=time.perf_counter() - start)
