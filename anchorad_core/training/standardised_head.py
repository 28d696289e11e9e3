"""Train a linear head in standardised feature coordinates, keep it a plain ``nn.Linear``.

The phase-1 probe folds the standardisation of the pooled features into the head
(``W = W_z / σ``, :mod:`.linear_probe`), so the head is a plain linear layer on the raw
feature. That is the right form to *use*, but the wrong one to *train* with Adam, whose
step is about ``lr`` per parameter whatever the parameter's scale. The demo's pooled
features span five orders of magnitude of spread (fMRI network similarities σ ≈ 5e-4,
clinical number readout σ up to 37), so on the raw head a step of ``lr`` is

* negligible for the weights of tiny-σ features (raw weights ~1e3): the head can never
  re-weight the fMRI connectivity or the DNA readout; and
* huge for those of large-σ features (raw weights ~1e-3): the first epoch of phase 2 wrecks
  the clinical probe (training loss 0.5 → 1.13 in the demo) and early stopping then keeps
  the phase-1 model — the round learns nothing from its auxiliary modalities.

:func:`standardised_head` swaps the head for an equivalent :class:`StandardisedHead`
(``W_z · (x − μ) / σ + b_z``, same function at the start) for the duration of training and
writes the trained weights back into the plain ``nn.Linear`` afterwards, so bundles, the
explanations and the parameter plan see the same module as before.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["StandardisedHead", "standardised_head"]


class StandardisedHead(nn.Module):
    """``weight · (x − mean) / scale + bias``: a linear head in standardised coordinates.

    Parameters
    ----------
    linear
        The raw-feature head it replaces; ``weight`` and ``bias`` start equivalent to it.
    mean, scale
        ``(P,)`` per-feature mean and spread of the training features (``scale > 0``).
    """

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, linear: nn.Linear, mean: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        if linear.bias is None:
            raise ValueError("the head must have a bias")
        mean = mean.detach().to(torch.float32)
        scale = scale.detach().to(torch.float32)
        if mean.shape != (linear.in_features,) or scale.shape != (linear.in_features,):
            raise ValueError(f"mean and scale must be ({linear.in_features},), got {tuple(mean.shape)}, "
                             f"{tuple(scale.shape)}")
        self.register_buffer("mean", mean.to(linear.weight.device))
        self.register_buffer("scale", scale.to(linear.weight.device))
        raw_w = linear.weight.detach().to(torch.float32)
        self.weight = nn.Parameter((raw_w * self.scale).to(linear.weight.dtype))
        self.bias = nn.Parameter((linear.bias.detach().to(torch.float32) + raw_w @ self.mean).to(linear.bias.dtype))
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.to(torch.float32) - self.mean) / self.scale
        return F.linear(z, self.weight.to(torch.float32), self.bias.to(torch.float32)).to(self.weight.dtype)

    @torch.no_grad()
    def write_to(self, linear: nn.Linear) -> None:
        """Set ``linear`` to the raw-feature head equal to this one."""
        assert linear.bias is not None
        raw_w = self.weight.to(torch.float32) / self.scale
        linear.weight.copy_(raw_w.to(linear.weight.dtype))
        linear.bias.copy_((self.bias.to(torch.float32) - raw_w @ self.mean).to(linear.bias.dtype))


@contextlib.contextmanager
def standardised_head(owner: nn.Module, name: str, features: torch.Tensor) -> Iterator[StandardisedHead]:
    """Train ``owner.<name>`` (an ``nn.Linear``) in the coordinates standardised on ``features``.

    Parameters
    ----------
    owner
        Module holding the head as attribute ``name``.
    name
        Attribute name of the head.
    features
        ``(n, P)`` training features the head reads (their mean and spread; a constant
        feature gets spread 1).

    Yields
    ------
    StandardisedHead
        The stand-in, installed as ``owner.<name>`` until the block ends; then its weights
        are written back into the original ``nn.Linear``, which is put back.
    """
    linear = getattr(owner, name)
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"{type(owner).__name__}.{name} is not an nn.Linear")
    features = features.detach().to(torch.float32)
    if features.ndim != 2 or features.shape[0] == 0:
        mean = torch.zeros(linear.in_features)
        scale = torch.ones(linear.in_features)
    else:
        mean = features.mean(dim=0)
        scale = features.std(dim=0, unbiased=False) if features.shape[0] > 1 else torch.ones_like(mean)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    stand_in = StandardisedHead(linear, mean, scale)
    stand_in.train(linear.training)
    stand_in.requires_grad_(linear.weight.requires_grad)
    setattr(owner, name, stand_in)
    try:
        yield stand_in
    finally:
        stand_in.write_to(linear)
        setattr(owner, name, linear)
