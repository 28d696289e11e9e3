"""The one small interface every modality backbone implements.

A backbone turns preprocessed samples of one modality into hidden tokens. It has room for
*appended tokens*: the anchored round of the method appends the Q-former output ``H_a`` to
the backbone's own tokens so that they take part in its self-attention (input-level
interaction). ``pooled`` is over the backbone's own tokens only (they have attended to
``H_a``); pooling over ``H_a`` as well — output-level fusion in disguise — is
``pooled_with_extra``, an option of the anchored round.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from ..modality import Modality


@dataclass
class BackboneOutput:
    """What a backbone returns.

    Attributes
    ----------
    tokens
        ``(B, N, C)`` the backbone's own output tokens (appended tokens removed).
    mask
        ``(B, N)`` bool, ``True`` where ``tokens`` holds a real (non-padding) token.
    pooled
        ``(B, P)`` the readout of the backbone's own tokens fed to a classification head
        (``P`` = :attr:`ModalityBackbone.pooled_width`; the mean token unless the backbone
        has a richer readout).
    extra
        ``(B, E, C)`` the appended tokens after the encoder, or ``None``.
    pooled_with_extra
        ``(B, P)`` the same readout with the valid appended tokens in the mean (``None``
        without appended tokens).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    extra: torch.Tensor | None = None
    pooled_with_extra: torch.Tensor | None = None


class ModalityBackbone(nn.Module, abc.ABC):
    """Base class of the four backbone families.

    Subclasses set the class attributes, implement :meth:`collate`, :meth:`forward` and
    :meth:`get_config`, and register themselves with
    :func:`anchorad_core.backbones.registry.register_backbone`.
    """

    #: Modality this family encodes.
    modality: ClassVar[Modality]
    #: Registry name of the family, stored in bundle configs.
    family: ClassVar[str]

    #: peft ``target_modules`` for LoRA on the attention projections (a list of module-name
    #: suffixes or one regular expression matched against full module names).
    lora_target_modules: "list[str] | str"
    #: Modules that are not LoRA-wrapped but train in phase 2 (peft ``modules_to_save``).
    phase2_trainable_modules: list[str] = []

    @property
    @abc.abstractmethod
    def width(self) -> int:
        """Width ``C`` of the output tokens."""

    @property
    def pooled_width(self) -> int:
        """Width ``P`` of :attr:`BackboneOutput.pooled` (``width`` unless the readout adds more)."""
        return self.width

    @property
    def pooled_blocks(self) -> tuple[tuple[str, int], ...]:
        """``(name, width)`` of the consecutive parts of :attr:`BackboneOutput.pooled` (widths
        sum to :attr:`pooled_width`); the phase-1 probe may leave a part out
        (:func:`anchorad_core.training.linear_probe.fit_linear_probe`)."""
        return (("token mean", self.pooled_width),)

    @property
    def attention_heads(self) -> list[int]:
        """Heads of each self-attention layer appended tokens pass through, in call order
        (one zero-initialised gate per head and layer: :mod:`anchorad_core.fusion.gated_injection`)."""
        raise NotImplementedError(f"{type(self).__name__} does not declare its attention layers")

    @property
    def extra_token_width(self) -> int:
        """Width of tokens that may be appended (``H_a`` is projected to this width)."""
        return self.width

    @abc.abstractmethod
    def collate(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Turn preprocessed samples into one batch of tensors (on the CPU).

        Parameters
        ----------
        samples
            sMRI: ``(X, Y, Z)`` float arrays; fMRI: ``(ROI, T)`` float arrays; clinical:
            note strings; genetics: lists of DNA strings.
        """

    @abc.abstractmethod
    def forward(
        self,
        batch: dict[str, torch.Tensor],
        extra_tokens: torch.Tensor | None = None,
        extra_mask: torch.Tensor | None = None,
    ) -> BackboneOutput:
        """Encode a batch; ``extra_tokens`` ``(B, E, extra_token_width)`` are appended.

        ``extra_mask`` ``(B, E)`` bool marks which appended tokens are real: masked ones are
        never attended to and never pooled.
        """

    @classmethod
    @abc.abstractmethod
    def from_config(
        cls, config: dict[str, Any], base_dir: "Path | None" = None, load_weights: bool = True
    ) -> "ModalityBackbone":
        """Build from :meth:`get_config` output (without ``"family"``).

        Relative paths in ``config`` are resolved against ``base_dir``. With
        ``load_weights=False`` only the architecture is built (random weights).
        """

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments, including ``"family"``."""

    def export_files(self, directory: Path) -> dict[str, Any]:
        """Write files besides the weights that rebuilding needs (tokenizer, HF config...).

        Returns the config entries to update so that they point at the written files
        (paths relative to ``directory``). The default writes nothing.
        """
        return {}

    @property
    def device(self) -> torch.device:
        """Device of the first parameter."""
        return next(self.parameters()).device


def stack_arrays(samples: Sequence[Any], expected: tuple[int, ...], what: str, hint: str) -> torch.Tensor:
    """Stack same-shaped float samples (arrays or tensors) into ``(B, *expected)``.

    Raises :class:`~anchorad_core.errors.InputDataError` for an empty batch, a sample of
    another shape (``hint`` says how to fix it) or non-finite values.
    """
    import numpy as np

    from ..errors import InputDataError

    if len(samples) == 0:
        raise InputDataError(f"cannot collate an empty list of {what}s")
    arrays = []
    for i, sample in enumerate(samples):
        arr = np.asarray(sample.detach().cpu() if isinstance(sample, torch.Tensor) else sample, dtype=np.float32)
        if arr.shape != expected:
            raise InputDataError(f"{what} {i} has shape {arr.shape}; this backbone expects {expected} ({hint})")
        if not np.isfinite(arr).all():
            raise InputDataError(f"{what} {i} contains NaN or infinite values")
        arrays.append(arr)
    return torch.from_numpy(np.stack(arrays))


def extra_token_mask(
    extra_mask: "torch.Tensor | None", shape: "tuple[int, ...] | torch.Size", device: torch.device
) -> torch.Tensor:
    """Boolean ``(B, E)`` validity of appended tokens (all valid when ``extra_mask`` is ``None``)."""
    if extra_mask is None:
        return torch.ones(tuple(shape), dtype=torch.bool, device=device)
    if tuple(extra_mask.shape) != tuple(shape):
        raise ValueError(f"extra_mask must have shape {tuple(shape)}, got {tuple(extra_mask.shape)}")
    return extra_mask.to(device=device, dtype=torch.bool)


def batch_to(batch: dict[str, torch.Tensor], device: "torch.device | str") -> dict[str, torch.Tensor]:
    """Move every tensor of a collated batch to ``device``."""
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
