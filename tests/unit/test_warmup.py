"""Learning-rate warm-up of the training loop: linear over the first epochs, then constant."""
import pytest
import torch
from torch import nn

from anchorad_core.errors import ConfigError
from anchorad_core.training.config import StageSettings
from anchorad_core.training.loop import fit


def _lrs_seen(settings: StageSettings, n_train: int = 8) -> list[float]:
    model = nn.Linear(2, 1)
    seen: list[float] = []

    original_step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    x = torch.randn(n_train, 2, generator=torch.Generator().manual_seed(0))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", spy)
        fit([model], lambda index: model(x[index]).pow(2).mean(), lambda: float("nan"), n_train, settings, seed=0)
    return seen


def test_linear_warmup_over_one_epoch_then_constant():
    lrs = _lrs_seen(StageSettings(epochs=3, batch_size=2, lr=1e-2, warmup_epochs=1.0))
    assert len(lrs) == 12  # 4 steps per epoch
    assert lrs[:4] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2])
    assert lrs[4:] == pytest.approx([1e-2] * 8)


def test_no_warmup_by_default():
    assert _lrs_seen(StageSettings(epochs=2, batch_size=4, lr=1e-3)) == pytest.approx([1e-3] * 4)


def test_negative_warmup_is_refused():
    with pytest.raises(ConfigError, match="warmup_epochs"):
        StageSettings(warmup_epochs=-1)
