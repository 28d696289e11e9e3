"""The evaluate profile: one timing helper, fold parts that add up, totals, the ratio, the table."""
import math

import pytest

from anchorad_core.training.profile import (
    MAIN_TRAIN_PARTS, PARTS, fold_profile, part_of, profile_summary, profile_table, timed,
)


def test_timed_adds_up_and_records_a_failing_block():
    seconds: dict[str, float] = {}
    with timed(seconds, "a"):
        pass
    first = seconds["a"]
    with timed(seconds, "a"):
        pass
    assert seconds["a"] >= first >= 0
    with pytest.raises(RuntimeError):
        with timed(seconds, "b"):
            raise RuntimeError("stop")
    assert seconds["b"] >= 0


def test_trainer_keys_map_to_parts():
    assert part_of("phase1.smri") == part_of("phase1.build") == "phase 1"
    assert part_of("feature_cache") == part_of("cross_fitting") == "features"
    assert part_of("phase2.aggregation") == "phase 2"
    assert part_of("ablation") == "ablation"
    with pytest.raises(KeyError):
        part_of("something else")


def test_fold_parts_and_other_sum_to_the_fold_total():
    seconds = {"phase1.smri": 1.0, "phase1.fmri": 2.0, "feature_cache": 0.5, "phase2.smri": 4.0,
               "phase2.aggregation": 0.25, "baselines": 0.5, "scoring": 0.125, "ablation": 3.0}
    fold = fold_profile(seconds, total_s=12.0)
    assert fold["parts"] == {"phase 1": 3.0, "features": 0.5, "phase 2": 4.25, "baselines": 0.5,
                             "ablation": 3.0, "scoring": 0.125}
    assert math.isclose(sum(fold["parts"].values()) + fold["other_s"], fold["total_s"])


def test_summary_totals_and_ratio_and_table():
    folds = [{"task": "NC-AD", "repeat": 0, "fold": k,
              **fold_profile({"phase1.smri": 1.0, "phase2.smri": 3.0, "baselines": 0.5, "scoring": 0.5}, 5.5)}
             for k in range(2)]
    summary = profile_summary(folds, wall_s=12.0, shared_features_s=1.0)
    assert summary["totals"]["phase 1"] == 2.0 and summary["totals"]["phase 2"] == 6.0
    assert summary["folds_s"] == 11.0 and math.isclose(summary["outside_folds_s"], 1.0)
    # the cohort-wide features count once towards the main training they replace
    assert summary["main_train_s"] == sum(summary["totals"][p] for p in MAIN_TRAIN_PARTS) + 1.0 == 9.0
    assert math.isclose(summary["evaluate_over_main_train"], 12.0 / 9.0)
    table = profile_table(summary)
    assert all(p in table for p in PARTS)
    assert "= 1.33x" in table and table.count("NC-AD") == 2
