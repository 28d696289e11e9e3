"""Subject folders: discovery, all modalities from real files, overrides, missing modalities, cache."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from anchorad_core.data import PreprocessConfig, apoe_alleles_of, find_subject_files, load_subject
from anchorad_core.data.templates import template_path
from anchorad_core.errors import InputDataError
from anchorad_core.modality import Modality


def make_subject(root, sid="sub-01", *, t1=True, func=True, note=True, js=True, genetics="apoe"):
    folder = root / sid
    if t1:
        (folder / "anat").mkdir(parents=True)
        shutil.copy(template_path("t1_demo.nii.gz"), folder / "anat" / f"{sid}_T1w.nii.gz")
    if func:
        (folder / "func").mkdir(parents=True)
        shutil.copy(template_path("rest_roi_timeseries_schaefer400.npy"), folder / "func" / f"{sid}_task-rest_timeseries.npy")
        shutil.copy(template_path("rest_roi_timeseries_schaefer400.json"), folder / "func" / f"{sid}_task-rest_timeseries.json")
    if note or js:
        (folder / "clinical").mkdir(parents=True)
    if note:
        (folder / "clinical" / f"{sid}_note.txt").write_text("Reports forgetting appointments.\n")
    if js:
        (folder / "clinical" / f"{sid}_clinical.json").write_text(json.dumps({"age": 70, "mmse": 26}))
    if genetics:
        (folder / "genetics").mkdir(parents=True)
        if genetics == "apoe":
            (folder / "genetics" / f"{sid}_apoe.txt").write_text("E3/E4\n")
        else:
            shutil.copy(template_path("apoe_cds_fragment.fa"), folder / "genetics" / f"{sid}.fa")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_full_subject(tmp_path):
    folder = make_subject(tmp_path)
    s = load_subject(folder)
    assert s.subject_id == "sub-01"
    assert s.present == tuple(Modality) and s.missing == ()
    assert s.smri.shape == (64, 64, 64) and s.smri_geometry is not None
    assert s.fmri.shape == (400, 48)
    assert s.clinical == "Age: 70 years.\nMMSE: 26/30 (borderline).\n\nReports forgetting appointments."
    assert apoe_alleles_of(s.genetics) == [3, 4]
    assert s.sources[Modality.SMRI].endswith("sub-01_T1w.nii.gz")
    assert "sub-01_clinical.json + " in s.sources[Modality.CLINICAL]
    summary = json.loads(json.dumps(s.summary()))
    assert summary["present"] == ["smri", "fmri", "clinical", "genetics"]


def test_missing_modalities_and_session_folder(tmp_path):
    folder = make_subject(tmp_path, t1=False, func=False, note=False, js=False, genetics="fasta")
    s = load_subject(folder)
    assert s.present == (Modality.GENETICS,)
    assert s.missing == (Modality.SMRI, Modality.FMRI, Modality.CLINICAL)
    # files one level down in a session folder are found
    ses = folder / "ses-01" / "clinical"
    ses.mkdir(parents=True)
    (ses / "sub-01_note.txt").write_text("hello")
    assert find_subject_files(folder).clinical_note == ses / "sub-01_note.txt"


def test_overrides(tmp_path):
    folder = make_subject(tmp_path, t1=False)
    s = load_subject(folder, overrides={"clinical": "Pasted note.", Modality.GENETICS: "e4/e4", "fmri": None})
    assert s.clinical == "Pasted note."
    assert apoe_alleles_of(s.genetics) == [4, 4]
    assert s.fmri is None and Modality.FMRI in s.missing
    assert s.sources[Modality.CLINICAL].startswith("override")
    s2 = load_subject(None, overrides={"genetics": ">x\nACGT\n"}, subject_id="typed")
    assert s2.subject_id == "typed" and s2.present == (Modality.GENETICS,)
    s3 = load_subject(None, overrides={"smri": template_path("t1_demo.nii.gz")})
    assert s3.smri.shape == (64, 64, 64)


def test_bad_file_raises_or_becomes_missing(tmp_path):
    folder = make_subject(tmp_path, t1=False, func=False)
    (folder / "clinical" / "sub-01_note.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(InputDataError, match="not valid UTF-8") as info:
        load_subject(folder)
    assert info.value.path.name == "sub-01_note.txt"
    s = load_subject(folder, on_error="missing")
    assert s.clinical is None and any("UTF-8" in w for w in s.warnings)
    assert s.genetics is not None


def test_several_candidates_warn(tmp_path):
    folder = make_subject(tmp_path, t1=False, func=False, note=False, js=False)
    shutil.copy(template_path("apoe_cds_fragment.fa"), folder / "genetics" / "sub-01.fa")
    s = load_subject(folder)
    assert s.sources[Modality.GENETICS].endswith("_apoe.txt")  # genotype file wins over FASTA


def test_cache_round_trip(tmp_path):
    folder = make_subject(tmp_path, note=False, js=False, genetics=None)
    cache = tmp_path / "cache"
    cfg = PreprocessConfig(smri_cube=32)
    a = load_subject(folder, cfg, cache_dir=cache)
    files = sorted(p.name.split("-")[0] for p in (cache / "sub-01").iterdir())
    assert files == ["fmri", "smri"]
    b = load_subject(folder, cfg, cache_dir=cache)
    np.testing.assert_array_equal(a.smri, b.smri)
    np.testing.assert_array_equal(a.fmri, b.fmri)
    assert a.smri_geometry == b.smri_geometry and a.fmri_info == b.fmri_info
    # another config -> another cache entry
    load_subject(folder, PreprocessConfig(smri_cube=16), cache_dir=cache, modalities=[Modality.SMRI])
    assert len(list((cache / "sub-01").glob("smri-*.npz"))) == 2


def test_not_a_folder(tmp_path):
    with pytest.raises(InputDataError, match="subject folder not found"):
        load_subject(tmp_path / "nope")
