"""Clinical note / structured JSON readers and the fixed template."""
from __future__ import annotations

import json

import pytest

from anchorad_core.data import read_clinical, render_clinical_note
from anchorad_core.errors import InputDataError

FIELDS = {
    "age": 72,
    "sex": "F",
    "education_years": 16,
    "mmse": 27,
    "cdr_sb": 1.5,
    "complaints": ["misplaces objects", "word-finding difficulty"],
}


def test_fixed_template():
    assert render_clinical_note(FIELDS) == (
        "Age: 72 years. Sex: female. Education: 16 years.\n"
        "MMSE: 27/30 (normal range). CDR-SB: 1.5 (questionable impairment).\n"
        "Complaints (2): misplaces objects; word-finding difficulty."
    )


def test_extra_fields_and_leaks():
    warnings: list[str] = []
    text = render_clinical_note({"mmse": 30, "family_history": "mother had dementia", "diagnosis": "AD",
                                 "Smoker": False}, warnings=warnings)
    assert text == "MMSE: 30/30 (normal range).\nFamily history: mother had dementia.\nSmoker: no."
    assert "AD" not in text and any("diagnosis" in w for w in warnings)


def test_both_files_json_first(tmp_path):
    note = tmp_path / "sub-1_note.txt"
    note.write_text("\ufeffPatient seen with her daughter.\r\n", encoding="utf-8")
    js = tmp_path / "sub-1_clinical.json"
    js.write_text(json.dumps(FIELDS))
    text = read_clinical(note, js)
    assert text.startswith("Age: 72 years.")
    assert text.endswith("\n\nPatient seen with her daughter.")
    assert read_clinical(note_path=note) == "Patient seen with her daughter."


@pytest.mark.parametrize(
    "content,needle",
    [(b"", "is empty"), (b"   \n\t", "is empty"), (b"caf\xe9 au lait", "not valid UTF-8")],
)
def test_bad_notes(tmp_path, content, needle):
    p = tmp_path / "sub-1_note.txt"
    p.write_bytes(content)
    with pytest.raises(InputDataError, match=needle) as info:
        read_clinical(note_path=p)
    assert info.value.path == p


@pytest.mark.parametrize(
    "content,needle",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "must be an object"),
        ("{}", "no fields"),
        (json.dumps({"mmse": 45}), "outside the plausible range"),
        (json.dumps({"age": "old"}), "must be a number"),
        (json.dumps({"sex": "unknown-ish"}), "'sex'"),
        (json.dumps({"complaints": [1, 2]}), "complaints"),
        (json.dumps({"diagnosis": "AD"}), "no usable fields"),
    ],
)
def test_bad_json(tmp_path, content, needle):
    p = tmp_path / "sub-1_clinical.json"
    p.write_text(content)
    with pytest.raises(InputDataError, match=needle) as info:
        read_clinical(json_path=p)
    assert str(p) in str(info.value)
