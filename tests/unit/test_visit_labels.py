"""Labels per visit from an ADNIMERGE-shaped table: the rules of docs/COHORTS.md on hand-made edge cases."""
import pytest

from anchorad_core.cli import main
from anchorad_core.data import derive_labels, read_label_table, read_visit_table
from anchorad_core.errors import ConfigError, InputDataError

HEADER = "RID,PTID,VISCODE,M,DX_bl,DX,EXAMDATE"
VISITS = {
    # conversion exactly at the horizon: pMCI (inclusive)
    "converts_at_36": [("bl", 0, "LMCI", "MCI"), ("m12", 12, "LMCI", "MCI"), ("m36", 36, "LMCI", "Dementia")],
    # conversion one month after the horizon: neither sMCI nor pMCI
    "converts_at_37": [("bl", 0, "LMCI", "MCI"), ("m37", 37, "LMCI", "Dementia")],
    # stable through exactly 36 months: sMCI; later visits followed too briefly stay MCI
    "stable_36": [("bl", 0, "EMCI", "MCI"), ("m24", 24, "EMCI", "MCI"), ("m36", 36, "EMCI", "MCI")],
    # too-short follow-up without AD
    "short": [("bl", 0, "EMCI", "MCI"), ("m24", 24, "EMCI", "MCI")],
    # a visit without a diagnosis (missing) is not follow-up: the last diagnosed visit is at 24
    "missing_dx": [("bl", 0, "EMCI", "MCI"), ("m24", 24, "EMCI", "MCI"), ("m48", 48, "EMCI", "")],
    # a gap: no visit between 12 and 48, then MCI; followed 48 months, no AD seen
    "gap": [("bl", 0, "EMCI", "MCI"), ("m48", 48, "EMCI", "MCI")],
    # reverters: AD then MCI, and MCI then CN -> every visit left out
    "reverts_ad": [("bl", 0, "AD", "Dementia"), ("m12", 12, "AD", "MCI")],
    "reverts_mci": [("bl", 0, "LMCI", "MCI"), ("m12", 12, "LMCI", "CN"), ("m24", 24, "LMCI", "MCI")],
    # DX_bl fills an empty baseline DX (SMC counts as NC); "MCI to Dementia" is its new state
    "baseline_only": [("bl", 0, "SMC", ""), ("m06", 6, "SMC", "CN")],
    "change_word": [("bl", 0, "LMCI", "MCI"), ("m06", 6, "LMCI", "MCI to Dementia")],
}


def _write(tmp_path, visits=VISITS, header=HEADER, name="visits.csv"):
    lines = [header]
    for rid, (_, rows) in enumerate(visits.items(), start=1):
        for viscode, m, dx_bl, dx in rows:
            lines.append(f"{rid},011_S_{rid:04d},{viscode},{m},{dx_bl},{dx},2010-01-01")
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _labels(tmp_path, horizon=36):
    labels, summary = derive_labels(read_visit_table(_write(tmp_path)), horizon)
    names = {f"sub-ADNI011S{rid:04d}": key for rid, key in enumerate(VISITS, start=1)}
    out = {}
    for pid, ses, dx in zip(labels["participant_id"], labels["session_id"], labels["diagnosis"]):
        out.setdefault(names[pid], {})[ses] = dx
    return out, labels, summary


def test_rules_on_edge_cases(tmp_path):
    got, _, summary = _labels(tmp_path)
    assert got["converts_at_36"] == {"ses-M000": "pMCI", "ses-M012": "pMCI", "ses-M036": "AD"}
    assert got["converts_at_37"] == {"ses-M000": "MCI", "ses-M037": "AD"}
    assert got["stable_36"] == {"ses-M000": "sMCI", "ses-M024": "MCI", "ses-M036": "MCI"}
    assert got["short"] == {"ses-M000": "MCI", "ses-M024": "MCI"}
    assert got["missing_dx"] == {"ses-M000": "MCI", "ses-M024": "MCI"}  # ses-M048 has no diagnosis
    assert got["gap"] == {"ses-M000": "sMCI", "ses-M048": "MCI"}
    assert "reverts_ad" not in got and "reverts_mci" not in got
    assert got["baseline_only"] == {"ses-M000": "NC", "ses-M006": "NC"}
    assert got["change_word"] == {"ses-M000": "pMCI", "ses-M006": "AD"}
    assert summary.no_diagnosis == 1 and summary.reverters == 2 and summary.reverter_visits == 5
    assert "2 reverting participants (5 visits)" in summary.text()


def test_the_horizon_is_an_option(tmp_path):
    got, _, _ = _labels(tmp_path, horizon=24)
    assert got["converts_at_36"]["ses-M000"] == "MCI" and got["converts_at_36"]["ses-M012"] == "pMCI"
    assert got["stable_36"]["ses-M000"] == "sMCI" and got["short"]["ses-M000"] == "sMCI"
    with pytest.raises(ConfigError, match="horizon"):
        derive_labels(read_visit_table(_write(tmp_path)), 0)


def test_each_row_says_its_rule(tmp_path):
    _, labels, _ = _labels(tmp_path)
    rules = dict(zip(labels["participant_id"] + "/" + labels["session_id"], labels["rule"]))
    assert rules["sub-ADNI011S0001/ses-M000"].startswith("rule 4: AD at M036, 36 months later")
    assert rules["sub-ADNI011S0002/ses-M000"].startswith("rule 6: AD only at M037")
    assert rules["sub-ADNI011S0004/ses-M000"] == "rule 6: followed 24 months without AD (< 36)"


@pytest.mark.parametrize("header,row,expected", [
    ("RID,VISCODE,DX", "7,m06,MCI", ("sub-RID0007", "ses-M006")),
    ("participant_id,M,DX", "sub-x,12,CN", ("sub-x", "ses-M012")),
    ("PTID,EXAMDATE,DX", "011_S_0001,2010-01-01,CN\n011_S_0001,2011-01-01,CN", ("sub-ADNI011S0001", "ses-M012")),
])
def test_id_and_time_columns(tmp_path, header, row, expected):
    (tmp_path / "v.tsv").write_text(header.replace(",", "\t") + "\n" + row.replace(",", "\t") + "\n")
    visits = read_visit_table(tmp_path / "v.tsv")
    assert tuple(visits.iloc[-1][["participant_id", "session_id"]]) == expected


@pytest.mark.parametrize("text,needle", [
    ("RID,M,DX\n1,0,CN\n1,0,MCI\n", r"one visit is listed twice \(lines 2, 3\)"),
    ("RID,M,DX\n1,0,Parkinson\n", r"unknown diagnosis 'Parkinson' in column 'DX' on line 2"),
    ("RID,VISCODE,DX\n1,y1,CN\n", r"VISCODE 'y1' on line 2"),
    ("M,DX\n0,CN\n", r"no participant column"),
    ("RID,DX\n1,CN\n", r"no time column"),
    ("RID,M\n1,0\n", r"no diagnosis column"),
    ("RID,M,DX\n1,-3,CN\n", r"months >= 0 \(lines 2\)"),
])
def test_bad_visit_tables_name_file_and_line(tmp_path, text, needle):
    path = tmp_path / "visits.csv"
    path.write_text(text)
    with pytest.raises(InputDataError, match=needle) as info:
        read_visit_table(path)
    assert info.value.path == path


def test_cli_writes_a_label_table_the_cohort_reads(tmp_path, capsys):
    visits, out = _write(tmp_path), tmp_path / "labels.tsv"
    assert main(["labels", str(visits), str(out), "--horizon-months", "36"]) == 0
    printed = capsys.readouterr().out
    assert "labelled visits" in printed and "--labels" in printed
    table = read_label_table(out)
    assert {"NC", "MCI", "sMCI", "pMCI", "AD"} == set(table["diagnosis"])
    assert main(["labels", str(visits), str(out)]) == 2  # no silent overwrite
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    bad = tmp_path / "bad.csv"
    bad.write_text("RID,M,DX\n1,0,Parkinson\n")
    assert main(["labels", str(bad), str(tmp_path / "x.tsv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.csv" in err[0] and not (tmp_path / "x.tsv").exists()
