"""Captum Integrated Gradients of one anchored round, w.r.t. the anchor and the auxiliary inputs.

For anchor ``m̂`` the explained function is the round's probability of the target class,

    f(x_S, x_F, x_C, x_G) = softmax(head(anchor_LoRA-on(x_m̂ ⊕ Q-former(F_m(x_m) for m in M'))))[target],

where every auxiliary feature ``F_m`` is recomputed **with gradients from the raw input** by the
frozen phase-1 backbone (its LoRA adapter switched off with ``AnchorADModel.phase1``), while the
anchor's pass keeps its LoRA on. So attributions flow to the auxiliary inputs through the
Q-former, exactly along the path the prediction took.

One :class:`captum.attr.LayerIntegratedGradients` run covers all present modalities at once,
on a straight path from an all-baseline subject to the real one (so the convergence delta is
``sum(all attributions) - (f(x) - f(x'))``):

* sMRI image and fMRI series: IG on the input tensor (an identity "layer" on the input; baseline
  0 = background intensity / the series' mean after z-scoring);
* text and DNA: LayerIG on the backbone's input **embedding layer** (``get_input_embeddings()``);
  baseline = the same token ids with every non-special token replaced by the pad token;
  attributions are summed over the embedding dimension to one score per token.

Captum's ``internal_batch_size`` evaluates the path in chunks of ``internal_batch_size``
interpolation points (default ``min(n_steps, DEFAULT_INTERNAL_BATCH_SIZE)``: the activations of
all four backbones for a 16-point chunk would dominate peak memory, while on a CPU a larger
chunk is hardly faster), so a run costs about ``n_steps`` forward/backward passes of the round
(plus a few single-sample passes for the layer values and the delta).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..fusion.qformer import AuxiliaryFeatures
from ..modality import Modality
from .maps import ModalityMap, base_map, roi_map_from_series, volume_from_cube, word_map

__all__ = ["RoundAttribution", "round_attributions", "DEFAULT_N_STEPS"]

#: Default number of IG steps (Gauss-Legendre); enough for a small delta on the demo bundle.
DEFAULT_N_STEPS = 16

#: Default interpolation points per forward/backward pass (bounds peak memory; the GUI's value).
DEFAULT_INTERNAL_BATCH_SIZE = 4

_INPUT_KEY = {
    Modality.SMRI: "image",
    Modality.FMRI: "series",
    Modality.CLINICAL: "input_ids",
    Modality.GENETICS: "input_ids",
}


@dataclass
class RoundAttribution:
    """Integrated Gradients of one anchor round.

    Attributes
    ----------
    anchor : str
    target : str
        The explained class label.
    maps : dict
        Modality -> :class:`~.maps.ModalityMap` (present modalities only).
    totals : dict
        Modality -> sum of its raw attributions (before mapping).
    output : float
        ``f(x)``: the round's probability of ``target`` for the subject.
    baseline_output : float
        ``f(x')`` at the all-baseline subject.
    delta : float
        Captum's convergence delta ``sum(attributions) - (f(x) - f(x'))``.
    n_steps : int
    seconds : float
    """

    anchor: str
    target: str
    maps: dict[str, ModalityMap]
    totals: dict[str, float]
    output: float
    baseline_output: float
    delta: float
    n_steps: int
    seconds: float
    method: str = "LayerIntegratedGradients (gausslegendre)"
    attributed: list[str] = field(default_factory=list)

    @property
    def relative_delta(self) -> float:
        """``|delta| / max(|f(x) - f(x')|, 1e-6)``."""
        return abs(self.delta) / max(abs(self.output - self.baseline_output), 1e-6)


class _RoundFunction(nn.Module):
    """``f`` above, taking one tensor per attributed modality (batched along dim 0)."""

    def __init__(
        self,
        model: Any,
        anchor: Modality,
        order: Sequence[Modality],
        batches: Mapping[Modality, Mapping[str, Any]],
        fixed_aux: Mapping[Modality, AuxiliaryFeatures],
    ) -> None:
        super().__init__()
        self.model = model
        self.anchor = anchor
        self.order = list(order)
        self.batches = batches
        self.fixed_aux = fixed_aux
        # identity "layers" through which the raw sMRI / fMRI tensors pass (IG on the input)
        self.inputs = nn.ModuleDict({m.value: nn.Identity() for m in self.order if m in (Modality.SMRI, Modality.FMRI)})

    def layer(self, modality: Modality) -> nn.Module:
        """The module whose output is attributed for ``modality``."""
        if modality.value in self.inputs:
            return self.inputs[modality.value]
        return self.model.backbone(modality).model.get_input_embeddings()

    def _batch(self, modality: Modality, x: torch.Tensor) -> dict[str, Any]:
        n = x.shape[0]
        batch = {}
        for key, value in self.batches[modality].items():
            if isinstance(value, torch.Tensor) and value.shape[0] == 1 and n != 1:
                value = value.expand(n, *value.shape[1:])
            batch[key] = value
        key = _INPUT_KEY[modality]
        batch[key] = self.inputs[modality.value](x) if modality.value in self.inputs else x
        return batch

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        n = inputs[0].shape[0]
        model = self.model
        batches = {m: self._batch(m, x) for m, x in zip(self.order, inputs)}
        aux: dict[Modality, AuxiliaryFeatures] = {}
        for m, feats in self.fixed_aux.items():
            aux[m] = AuxiliaryFeatures(
                feats.tokens.expand(n, -1, -1), feats.mask.expand(n, -1), feats.present.expand(n)
            )
        for m in self.order:
            if m is self.anchor:
                continue
            with model.phase1(m) as backbone:  # LoRA of m off: its phase-1 features
                out = backbone(batches[m])
            aux[m] = AuxiliaryFeatures(out.tokens, out.mask, torch.ones(n, dtype=torch.bool, device=out.tokens.device))
        anchor_batch = batches[self.anchor]
        result = model.anchored(self.anchor, anchor_batch, aux)  # anchor's LoRA on
        return torch.softmax(result.logits.float(), dim=-1)


def _baseline(modality: Modality, x: torch.Tensor, backbone: Any) -> torch.Tensor:
    if modality in (Modality.SMRI, Modality.FMRI):
        return torch.zeros_like(x)
    tokenizer = backbone.tokenizer
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=x.dtype, device=x.device)
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
    keep = torch.isin(x, special)
    return torch.where(keep, x, torch.full_like(x, int(pad)))


def round_attributions(
    model: Any,
    anchor: Modality,
    subject: Any,
    batches: Mapping[Modality, Mapping[str, Any]],
    features: "Mapping[Modality, AuxiliaryFeatures] | None" = None,
    target: int = 0,
    labels: Sequence[str] = (),
    n_steps: int = DEFAULT_N_STEPS,
    internal_batch_size: int | None = None,
    auxiliaries: bool = True,
) -> RoundAttribution:
    """Integrated Gradients of anchor ``anchor``'s round for one subject.

    Parameters
    ----------
    model : AnchorADModel
        In eval mode.
    anchor : Modality
    subject : Subject
        For mapping (T1 geometry, note, sequences).
    batches : mapping
        Modality -> the subject's collated batch (``Diagnosis.features``), on the model's device.
    features : mapping, optional
        Cached phase-1 features of the auxiliary modalities; used only when ``auxiliaries`` is
        ``False`` (the auxiliary inputs are then held fixed and get no attribution).
    target : int
        Index of the explained class.
    labels : sequence of str
        Class labels (for the record).
    n_steps : int
        IG steps (Gauss-Legendre).
    internal_batch_size : int, optional
        Interpolation points per forward/backward pass (default
        ``min(n_steps, DEFAULT_INTERNAL_BATCH_SIZE)``; ``n_steps`` makes it one pass).
    auxiliaries : bool
        Also attribute to the auxiliary inputs, through the Q-former (default).

    Returns
    -------
    RoundAttribution
    """
    from captum.attr import LayerIntegratedGradients

    start = time.perf_counter()
    present = [m for m in model.modalities if m in batches]
    if anchor not in present:
        raise ValueError(f"the anchor {anchor.value} is missing for this subject")
    order = [m for m in present if auxiliaries or m is anchor]
    fixed = {} if auxiliaries else {m: f for m, f in (features or {}).items() if m is not anchor and m in present}
    fn = _RoundFunction(model, anchor, order, batches, fixed)
    inputs = tuple(torch.as_tensor(batches[m][_INPUT_KEY[m]]) for m in order)
    baselines = tuple(_baseline(m, x, model.backbone(m)) for m, x in zip(order, inputs))
    layers = [fn.layer(m) for m in order]
    with warnings.catch_warnings():  # "multiple layers": ours are independent by construction
        warnings.filterwarnings("ignore", message="Multiple layers provided")
        lig = LayerIntegratedGradients(fn, layers if len(layers) > 1 else layers[0])
    recorder = _Recorder(fn, layers)
    with torch.enable_grad(), recorder:
        attributions = lig.attribute(
            inputs if len(inputs) > 1 else inputs[0],
            baselines=baselines if len(baselines) > 1 else baselines[0],
            target=int(target),
            n_steps=int(n_steps),
            method="gausslegendre",
            internal_batch_size=int(internal_batch_size or min(int(n_steps), DEFAULT_INTERNAL_BATCH_SIZE)),
        )
    with torch.no_grad():
        # f(x) and the baselines' layer outputs come from the two single-sample forwards Captum
        # makes before the path (for the layer values of the inputs and of the baselines), when
        # they were recorded; otherwise they are computed again
        f_x_out = _recorded_output(recorder, inputs)
        f_x = float((f_x_out if f_x_out is not None else fn(*inputs))[0, int(target)])
        f_b = float(_at_baseline(fn, layers, inputs, baselines, _recorded_layers(recorder, baselines))[0, int(target)])
    if len(layers) == 1:
        attributions = [attributions]
    # Captum's own delta check wants one layer row per example, which the DNA embedding layer
    # (one row per window) does not have; this is the same quantity.
    total = sum(float((a[0] if isinstance(a, (tuple, list)) else a).detach().double().sum()) for a in attributions)
    delta = total - (f_x - f_b)
    maps: dict[str, ModalityMap] = {}
    totals: dict[str, float] = {}
    for m, attr in zip(order, attributions):
        attr = attr[0] if isinstance(attr, (tuple, list)) else attr
        attr = attr.detach().float().cpu()
        totals[m.value] = float(attr.sum())
        maps[m.value] = _map_attribution(m, attr, model, subject, batches[m])
    return RoundAttribution(
        anchor=anchor.value,
        target=labels[int(target)] if labels else str(int(target)),
        maps=maps,
        totals=totals,
        output=f_x,
        baseline_output=f_b,
        delta=float(delta),
        n_steps=int(n_steps),
        seconds=time.perf_counter() - start,
        attributed=[m.value for m in order],
    )


class _Recorder:
    """Records, while active, the inputs, output and attributed-layer outputs of every
    single-sample call of the round function (Captum's layer-value forwards), so that ``f(x)``
    and the baselines' layer outputs need no forward of their own."""

    def __init__(self, fn: nn.Module, layers: Sequence[nn.Module]) -> None:
        self.fn, self.layers = fn, list(layers)
        self.calls: list[tuple[tuple, torch.Tensor, dict[int, Any]]] = []
        self._handles: list[Any] = []

    def __enter__(self) -> "_Recorder":
        current: dict[int, Any] = {}
        count = [0]

        def pre(_m: Any, args: tuple) -> None:
            current.clear()
            count[0] += 1

        def post(_m: Any, args: tuple, out: torch.Tensor) -> None:
            # only Captum's first two calls (layer values of the inputs, then of the baselines):
            # its later path calls pass the same inputs but replace the layer outputs
            if count[0] <= 2 and args and args[0].shape[0] == 1:
                self.calls.append((tuple(a.detach() for a in args), out.detach(), dict(current)))

        self._handles = [self.fn.register_forward_pre_hook(pre), self.fn.register_forward_hook(post)]
        self._handles += [
            layer.register_forward_hook(lambda _m, _i, out, i=i: current.__setitem__(i, _detached(out)))
            for i, layer in enumerate(self.layers)
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _detached(out: Any) -> Any:
    return out.detach() if isinstance(out, torch.Tensor) else out


def _find_call(recorder: "_Recorder | None", args: tuple) -> "tuple | None":
    for call_args, out, layers in (recorder.calls if recorder is not None else []):
        if len(call_args) == len(args) and all(
            a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, torch.as_tensor(b).to(a.device))
            for a, b in zip(call_args, args)
        ):
            return call_args, out, layers
    return None


def _recorded_output(recorder: "_Recorder | None", args: tuple) -> "torch.Tensor | None":
    """The recorded output of ``fn(*args)``, if such a call was recorded."""
    call = _find_call(recorder, args)
    return None if call is None else call[1]


def _recorded_layers(recorder: "_Recorder | None", args: tuple) -> "dict[int, Any] | None":
    """The recorded attributed-layer outputs of ``fn(*args)`` (all layers), if recorded."""
    call = _find_call(recorder, args)
    if call is None or len(call[2]) != len(recorder.layers):  # type: ignore[union-attr]
        return None
    return call[2]


def _at_baseline(
    fn: nn.Module, layers: Sequence[nn.Module], inputs: tuple, baselines: tuple,
    captured: "dict[int, Any] | None" = None,
) -> torch.Tensor:
    """``f`` at the start of the IG path: the real inputs with every attributed layer's output
    replaced by its output for the baselines (not ``fn(*baselines)``: a model may use the token
    ids for more than the embedding lookup, e.g. ESM derives position ids from padding).
    ``captured``: those layer outputs when already known (layer index -> output)."""
    if captured is None:
        captured = {}
        handles = [
            layer.register_forward_hook(lambda _m, _i, out, i=i: captured.__setitem__(i, out))
            for i, layer in enumerate(layers)
        ]
        try:
            fn(*baselines)
        finally:
            for h in handles:
                h.remove()
    handles = [
        layer.register_forward_hook(lambda _m, _i, _out, i=i: captured[i]) for i, layer in enumerate(layers)
    ]
    try:
        return fn(*inputs)
    finally:
        for h in handles:
            h.remove()


def _map_attribution(modality: Modality, attr: torch.Tensor, model: Any, subject: Any, batch: Mapping[str, Any]) -> ModalityMap:
    backbone = model.backbone(modality)
    if modality is Modality.SMRI:
        # (1, C, X, Y, Z) on the cube (input axis order), summed over channels
        return volume_from_cube(attr[0].sum(dim=0).numpy(), subject.smri_geometry)
    if modality is Modality.FMRI:
        info = getattr(subject, "fmri_info", None) or {}
        return roi_map_from_series(attr[0, 0].numpy(), backbone.patch_size, str(info.get("atlas") or "schaefer400_17n"))
    per_slot = attr.sum(dim=-1)  # embedding output summed over its width
    if modality is Modality.CLINICAL:
        return word_map(subject.clinical, batch["token_offsets"][0], per_slot.reshape(-1).numpy())
    # genetics: the embedding layer saw the subject's valid windows (rows, L); scatter them into
    # the (K * L) window slots and gather the output tokens with token_index
    chunk_mask = torch.as_tensor(batch["chunk_mask"][0]).bool().cpu()
    k, length = batch["input_ids"].shape[1:]
    slots = torch.zeros(k, length)
    slots[chunk_mask] = per_slot.reshape(-1, length)
    token_index = torch.as_tensor(batch["token_index"][0]).long().cpu()
    scores = slots.reshape(-1)[token_index].numpy()
    return base_map(subject.genetics, batch, scores)
