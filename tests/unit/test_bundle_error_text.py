"""A bundle whose weights do not fit says what does not fit, on one line (not torch's bare header)."""
from __future__ import annotations

import torch


def test_state_dict_errors_keep_what_is_wrong_on_one_line():
    from anchorad_core.bundle import _first_line

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    bad = {"0.weight": torch.zeros(3, 2), "0.bias": torch.zeros(2), "1.weight": torch.zeros(2, 5),
           **{f"extra{i}": torch.zeros(1) for i in range(5)}}
    try:
        model.load_state_dict(bad)
    except RuntimeError as error:
        text = _first_line(error)
    assert "\n" not in text
    assert text.startswith("Error(s) in loading state_dict for Sequential:")
    assert 'Missing key(s) in state_dict: "1.bias"' in text
    assert "Unexpected key(s) in state_dict: extra0, extra1, extra2 and 2 more" in text
    assert "size mismatch for 2 tensors (e.g. 0.weight is [3, 2] in the file, [2, 2] in the model)" in text
    assert _first_line(ValueError("plain\nsecond")) == "plain"
