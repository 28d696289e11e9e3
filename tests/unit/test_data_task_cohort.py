"""Tasks, the label hierarchy, cohort validation and bulk loading."""
from __future__ import annotations

import numpy as np
import pytest

from anchorad_core.data import PreprocessConfig, Task, load_cohort
from anchorad_core.data.config import PreprocessConfig as PC
from anchorad_core.errors import CancelledError, ConfigError, InputDataError
from anchorad_core.modality import Modality
from anchorad_core.progress import Progress


@pytest.mark.parametrize(
    "text,neg,pos",
    [("NC-AD", "NC", "AD"), ("nc vs mci", "NC", "MCI"), ("sMCI-pMCI", "sMCI", "pMCI"), ("CN_vs_AD", "NC", "AD"),
     ("NC/PD", "NC", "PD")],
)
def test_task_parse(text, neg, pos):
    t = Task.parse(text)
    assert (t.negative, t.positive) == (neg, pos) and t.name == f"{neg}-{pos}"


def test_hierarchy():
    nc_mci = Task.parse("NC-MCI")
    assert [nc_mci.target(l) for l in ["NC", "sMCI", "pMCI", "MCI", "AD", None]] == [0, 1, 1, 1, None, None]
    prog = Task.parse("sMCI-pMCI")
    assert [prog.target(l) for l in ["sMCI", "pMCI", "MCI", "NC"]] == [0, 1, None, None]


@pytest.mark.parametrize("bad", ["NC", "NC-AD-MCI", "MCI-pMCI", "AD-AD", ""])
def test_bad_tasks(bad):
    with pytest.raises(ConfigError):
        Task.parse(bad)


def test_config_round_trip_and_validation():
    cfg = PC(smri_cube=96, fmri_frames=160)
    assert PC.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown preprocessing option"):
        PC.from_dict({"smri_cube": 64, "bogus": 1})
    with pytest.raises(ConfigError, match="does not match atlas"):
        PC(fmri_n_rois=450)
    with pytest.raises(ConfigError):
        PC(fmri_frame_policy="stretch")


def _cohort(root, rows, folders=None, header="participant_id\tdiagnosis"):
    root.mkdir(exist_ok=True)
    (root / "participants.tsv").write_text(header + "\n" + "\n".join("\t".join(r) for r in rows) + "\n")
    for pid in folders if folders is not None else [r[0] for r in rows]:
        (root / pid / "clinical").mkdir(parents=True, exist_ok=True)
        (root / pid / "clinical" / f"{pid}_note.txt").write_text(f"note of {pid}")
    return root


ROWS = [("sub-01", "NC"), ("sub-02", "sMCI"), ("sub-03", "pMCI"), ("sub-04", "AD"), ("sub-05", "CN"), ("sub-06", "n/a")]


def test_task_subjects(tmp_path):
    c = load_cohort(_cohort(tmp_path / "c", ROWS))
    assert c.labels_present == ["AD", "NC", "pMCI", "sMCI"]
    ids, y = c.task_subjects("NC-AD")
    assert ids == ["sub-01", "sub-04", "sub-05"] and y.tolist() == [0, 1, 0]
    ids, y = c.task_subjects("NC-MCI")
    assert ids == ["sub-01", "sub-02", "sub-03", "sub-05"] and y.tolist() == [0, 1, 1, 0]
    ids, y = c.task_subjects("sMCI-pMCI")
    assert ids == ["sub-02", "sub-03"] and y.dtype == np.int64
    with pytest.raises(InputDataError, match="no participant has diagnosis 'PD'") as info:
        c.task_subjects("NC-PD")
    assert info.value.path.name == "participants.tsv"


@pytest.mark.parametrize(
    "rows,folders,header,needle",
    [
        ([("sub-01", "NC"), ("sub-01", "AD")], None, None, "duplicate participant_id"),
        ([("sub-01", "NC"), ("sub-02", "AD")], ["sub-01"], None, "no subject folder .*sub-02"),
        ([("sub-01", "NC")], None, "participant_id\tdx", "no 'diagnosis' column"),
        ([("sub-01,NC",)], [], "participant_id,diagnosis", "no 'participant_id' column"),
        ([("", "NC")], [], None, "empty participant_id"),
        ([("sub-01", "MCI-like")], None, None, "must not contain '-'"),
    ],
)
def test_cohort_validation(tmp_path, rows, folders, header, needle):
    root = _cohort(tmp_path / "c", rows, folders, header or "participant_id\tdiagnosis")
    with pytest.raises(InputDataError, match=needle) as info:
        load_cohort(root)
    assert info.value.path == root / "participants.tsv"


def test_missing_tsv(tmp_path):
    (tmp_path / "c").mkdir()
    with pytest.raises(InputDataError, match="no participants.tsv"):
        load_cohort(tmp_path / "c")


def test_bare_ids_map_to_sub_folders(tmp_path):
    root = _cohort(tmp_path / "c", [("01", "NC"), ("02", "AD")], ["sub-01", "sub-02"])
    c = load_cohort(root)
    assert c.subject_folder("01").name == "sub-01"


def test_load_subjects_progress_cancel_workers(tmp_path):
    c = load_cohort(_cohort(tmp_path / "c", ROWS))
    seen = []
    subs = c.load_subjects(progress=Progress(lambda *update: seen.append(update)))
    assert [s.subject_id for s in subs] == c.ids
    assert seen == [("loading subjects", d, 6) for d in range(1, 7)]
    assert all(s.present == (Modality.CLINICAL,) for s in subs)

    seen2 = []
    subs2 = c.load_subjects(progress=Progress(lambda *update: seen2.append(update)), stage="train", workers=2)
    assert seen2 == [("train", d, 6) for d in range(1, 7)] and [s.clinical for s in subs2] == [s.clinical for s in subs]
    loaded = []  # cancelled once two subjects are loaded: no third is read
    with pytest.raises(CancelledError):
        c.load_subjects(progress=Progress(lambda *update: loaded.append(update), cancelled=lambda: len(loaded) >= 2))
    assert loaded == [("loading subjects", 1, 6), ("loading subjects", 2, 6)]
    with pytest.raises(CancelledError, match="after 0 of 6"):
        c.load_subjects(progress=Progress(cancelled=lambda: True), workers=2)
