"""Cohorts in the Clinica / ClinicaDL layout: one sample per session, label tables, notes from visit tables."""
import json

import pytest

from anchorad_core.data import PreprocessConfig, find_subject_files, load_cohort, load_subject, render_clinical_note
from anchorad_core.data.note_fields import note_field_summary, note_fields_text
from anchorad_core.errors import ConfigError, InputDataError
from anchorad_core.modality import Modality


def _note(folder, text):
    (folder / "clinical").mkdir(parents=True, exist_ok=True)
    prefix = f"{folder.parent.name}_{folder.name}" if folder.name.startswith("ses-") else folder.name
    (folder / "clinical" / f"{prefix}_note.txt").write_text(text)


@pytest.fixture()
def bids(tmp_path):
    """sub-01 with two sessions and participant-level genetics; sub-02 without sessions."""
    root = tmp_path / "bids"
    for ses in ("ses-M000", "ses-M012"):
        _note(root / "sub-01" / ses, f"note of {ses}")
    (root / "sub-01" / "genetics").mkdir()
    (root / "sub-01" / "genetics" / "sub-01_apoe.txt").write_text("E3/E4\n")
    _note(root / "sub-02", "note of sub-02")
    (root / "participants.tsv").write_text("participant_id\tdiagnosis\tsex\teducation_years\n"
                                           "sub-01\tMCI\tF\t16\nsub-02\tCN\tM\t12\n")
    return root


def test_a_session_folder_is_one_subject_with_the_participant_files(bids):
    s = load_subject(bids / "sub-01" / "ses-M012")
    assert s.subject_id == "sub-01_ses-M012"
    assert s.clinical == "note of ses-M012" and s.clinical_fields == ["free_text"]
    assert s.has(Modality.GENETICS) and s.sources[Modality.GENETICS].endswith("sub-01/genetics/sub-01_apoe.txt")


def test_a_participant_folder_with_several_sessions_is_an_error(bids):
    with pytest.raises(InputDataError, match=r"holds 2 sessions \(ses-M000, ses-M012\); give one session folder") as e:
        find_subject_files(bids / "sub-01")
    assert e.value.path == bids / "sub-01"
    (bids / "sub-03" / "ses-M000").mkdir(parents=True)
    _note(bids / "sub-03" / "ses-M000", "only visit")
    assert load_subject(bids / "sub-03").clinical == "only visit"  # one session: that session


def test_cohort_makes_one_sample_per_session_from_participants_tsv(bids):
    c = load_cohort(bids)
    assert c.ids == ["sub-01_ses-M000", "sub-01_ses-M012", "sub-02"]
    assert c.groups(c.ids) == ["sub-01", "sub-01", "sub-02"]
    assert [c.label(i) for i in c.ids] == ["MCI", "MCI", "NC"]  # each session has the participant's label
    assert [s.clinical for s in c.load_subjects()] == ["note of ses-M000", "note of ses-M012", "note of sub-02"]


def test_cohort_from_a_clinicadl_label_table(bids, tmp_path):
    labels = tmp_path / "labels.tsv"
    labels.write_text("participant_id\tsession_id\tdiagnosis\tage\n"
                      "sub-01\tses-M000\tsMCI\t70\n01\tM012\tpMCI\t71\nsub-01\tses-M024\tAD\t72\nsub-02\t\tCN\t60\n")
    (bids / "participants.tsv").unlink()  # optional with a label table
    c = load_cohort(bids, labels)
    assert c.ids == ["sub-01_ses-M000", "sub-01_ses-M012", "sub-02"]
    assert [c.label(i) for i in c.ids] == ["sMCI", "pMCI", "NC"] and c.tsv == labels
    assert c.unmatched == ["sub-01/ses-M024"]  # a visit without imaging: skipped, listed
    ids, y = c.task_subjects("sMCI-pMCI")
    assert ids == ["sub-01_ses-M000", "sub-01_ses-M012"] and y.tolist() == [0, 1]
    ids, _ = c.task_subjects("NC-MCI")
    assert c.groups(ids) == ["sub-01", "sub-01", "sub-02"]


@pytest.mark.parametrize("text,needle", [
    ("participant_id\tdiagnosis\nsub-01\tAD\n", r"no 'session_id' column"),
    ("participant_id\tsession_id\tdiagnosis\nsub-01\tses-M000\tAD\nsub-01\tM000\tAD\n", r"listed twice \(lines 2, 3\)"),
    ("participant_id\tsession_id\tdiagnosis\nsub-09\tses-M000\tAD\n", r"none with a folder.*sub-09/ses-M000"),
    ("participant_id\tsession_id\tdiagnosis\nsub-01\tses-M000\tMCI-like\n", r"must not contain '-'"),
])
def test_bad_label_tables_name_the_file(bids, tmp_path, text, needle):
    labels = tmp_path / "labels.tsv"
    labels.write_text(text)
    with pytest.raises(InputDataError, match=needle) as info:
        load_cohort(bids, labels)
    assert info.value.path == labels


def _sessions_table(bids, rows):
    (bids / "sub-01" / "sub-01_sessions.tsv").write_text(
        "session_id\tAGE\tMMSE\tCDRSB\tCDGLOBAL\tADAS13\tFAQ\tDX\tEXAMDATE\n" + "\n".join(rows) + "\n")


def test_notes_from_the_sessions_table(bids):
    _sessions_table(bids, ["ses-M000\t73\t24\t2.5\t0.5\t18\t4\tMCI\t2010-01-01",
                           "M012\t74\tn/a\t3\t0.5\t21\t6\tDementia\t2011-01-01"])
    folder = bids / "sub-01" / "ses-M000"
    (folder / "clinical" / "sub-01_ses-M000_note.txt").unlink()
    s = load_subject(folder)
    assert s.clinical.splitlines() == [
        "Age: 73 years. Sex: female. Education: 16 years.",  # sex and education from participants.tsv
        "MMSE: 24/30 (borderline). CDR-SB: 2.5 (questionable impairment). CDR global: 0.5 (very mild dementia). "
        "ADAS-Cog 13: 18/85. FAQ: 4/30.",
    ]
    assert "sub-01_sessions.tsv (row ses-M000)" in s.sources[Modality.CLINICAL]
    assert s.clinical_fields == ["age", "sex", "education_years", "mmse", "cdr_sb", "cdr_global", "adas13", "faq"]
    later = load_subject(bids / "sub-01" / "ses-M012")  # a table row plus the free-text note
    assert "MMSE" not in later.clinical and "Dementia" not in later.clinical and later.clinical.endswith("ses-M012")
    assert later.clinical_fields[-1] == "free_text"
    without = load_subject(folder, PreprocessConfig(clinical_exclude=("diagnostic",)))
    assert "MMSE" not in without.clinical and "CDR" not in without.clinical and "FAQ: 4/30." in without.clinical
    assert without.clinical_fields == ["age", "sex", "education_years", "adas13", "faq"]


def test_a_session_json_wins_over_the_table_and_bad_cells_name_the_file(bids):
    folder = bids / "sub-01" / "ses-M000"
    _sessions_table(bids, ["ses-M000\tseventy\t24\t2.5\t0.5\t18\t4\tMCI\t2010-01-01"])
    with pytest.raises(InputDataError, match=r"row ses-M000: column 'AGE' must be a number, got 'seventy'") as info:
        load_subject(folder)
    assert info.value.path.name == "sub-01_sessions.tsv"
    (folder / "clinical" / "sub-01_ses-M000_clinical.json").write_text(json.dumps({"age": 70, "moca": 22}))
    assert load_subject(folder).clinical.startswith("Age: 70 years.\nMoCA: 22/30.")


def test_render_fields_left_out_and_recorded():
    rendered = []
    text = render_clinical_note({"AGE": 70, "mmse": 22, "CDRSB": 3, "faq": 9, "diagnosis": "AD"},
                                exclude=("mmse", "cdr_sb"), rendered=rendered)
    assert text == "Age: 70 years.\nFAQ: 9/30." and rendered == ["age", "faq"]
    with pytest.raises(InputDataError, match="no usable fields once mmse are left out"):
        render_clinical_note({"mmse": 22}, exclude=("mmse",))
    assert PreprocessConfig(clinical_exclude=["diagnostic", "FAQ"]).clinical_exclude == \
        ("cdr_global", "cdr_sb", "faq", "mmse")
    assert PreprocessConfig(clinical_exclude=["cdr"]).clinical_exclude == ("cdr_global", "cdr_sb")
    with pytest.raises(ConfigError, match="clinical_exclude"):
        PreprocessConfig.from_dict({"clinical_exclude": "mmse"})


def test_note_fields_record_and_its_line(bids):
    _sessions_table(bids, ["ses-M000\t73\t24\t2.5\t0.5\t18\t4\tMCI\t2010-01-01"])
    config = PreprocessConfig(clinical_exclude=("mmse",))
    subjects = load_cohort(bids).load_subjects(config=config)
    record = note_field_summary(subjects, config.clinical_exclude)
    assert record["notes"] == 3 and record["fields"]["free_text"] == 3 and record["fields"]["age"] == 1
    assert note_fields_text(record) == ("3 notes: age (1), sex (1), education_years (1), cdr_sb (1), cdr_global (1), "
                                        "adas13 (1), faq (1); free text in 3; left out: mmse")
    assert note_fields_text(None) == "not recorded"


def test_the_report_states_the_note_fields_in_one_line():
    from anchorad_core.report import pages
    from anchorad_core.report.bundle_info import BundleInfo

    class Diagnosis:
        labels, bundle = ["NC", "AD"], {}

    record = {"notes": 20, "fields": {"age": 20, "sex": 20, "free_text": 4}, "left_out": ["cdr_sb", "mmse"]}
    rows = dict(pages._bundle_rows(Diagnosis(), BundleInfo.of(Diagnosis(), {"note_fields": record, "config": {}})))
    assert rows["Clinical notes"] == "20 notes: age, sex; free text in 4; left out: cdr_sb, mmse"
    assert "Clinical notes" not in dict(pages._bundle_rows(Diagnosis(), BundleInfo.of(Diagnosis(), {"config": {}})))
