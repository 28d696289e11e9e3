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

* sMRI image: IG on the input tensor (an identity "layer" on the input); baseline = the image
  blurred with a Gaussian of :data:`SMRI_BASELINE_SIGMA` cube voxels. Not the black image: the
  UniFormer's patch embeddings are LayerNormed, so the network is nearly scale-invariant and
  ``f(a x)`` jumps between ``a = 0`` and ``a = 0.025`` (demo sMRI round: 0.52 → 0.86), which no
  quadrature resolves (the delta stayed at 70 % of ``f(x) - f(x')`` at 128 steps). From the
  blurred image the path is smooth, and the map answers "what does the fine structure the
  backbone's first stages see contribute";
* fMRI series: IG on the input tensor; baseline 0 = the series' mean after z-scoring;
* text and DNA: LayerIG on the backbone's input **embedding layer** (``get_input_embeddings()``);
  baseline = the same token ids with every non-special token replaced by the pad token;
  attributions are summed over the embedding dimension to one score per token.

**Convergence.** IG is a path integral approximated by quadrature; too few steps give maps
that do not add up (on the demo bundle, 8 steps left a delta of +0.13 against a total of -0.24
to explain, and one modality's bar changed sign). So by default the steps are chosen
adaptively: start at ``n_steps`` and double, up to :data:`MAX_N_STEPS` (128), until
``|delta| <= DELTA_TOLERANCE * |f(x) - f(x')|`` (5 %; or ``|delta| <= DELTA_FLOOR`` = 1e-4
when ``f(x) - f(x')`` is that small). :class:`RoundAttribution` records every run's delta, the
steps used and whether the bound was met; when the cap is reached first,
:attr:`RoundAttribution.warning` says so with the figure.

**sMRI maps.** The voxel-wise IG map is speckle at a scale the backbone (tokens of 16 cube
voxels) does not resolve, and part of it lies on the skull and background; it is restricted to
the brain and aggregated per Schaefer-400 parcel (T1 on the atlas grid) or smoothed inside the
head foreground (:func:`~.maps.brain_volume_attribution`); the map's caption says which. The
totals are still over every voxel (completeness).

Captum's ``internal_batch_size`` evaluates the path in chunks of ``internal_batch_size``
interpolation points (default ``min(n_steps, DEFAULT_INTERNAL_BATCH_SIZE)``: the activations of
all four backbones for a 16-point chunk would dominate peak memory, while on a CPU a larger
chunk is hardly faster), so a run costs about ``n_steps`` forward/backward passes of the round
(plus a few single-sample passes for the layer values and the delta).
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..fusion.qformer import AuxiliaryFeatures
from ..modality import Modality
from .maps import ModalityMap, base_map, brain_volume_attribution, roi_map_from_series, volume_from_cube, word_map
from ..data.fileio import load_spatial_image

__all__ = ["RoundAttribution", "round_attributions", "SMRI_BASELINE_SIGMA", "BASELINES_TEXT", "DEFAULT_N_STEPS",
           "DELTA_TOLERANCE", "DELTA_FLOOR", "MAX_N_STEPS"]

#: Gaussian sigma (cube voxels) of the blurred sMRI baseline.
SMRI_BASELINE_SIGMA = 2.0
#: The baselines in words (for the report and the JSON).
BASELINES_TEXT = (f"input-level for sMRI (baseline: the image blurred, Gaussian sigma {SMRI_BASELINE_SIGMA:g} "
                  "cube voxels) and fMRI (baseline 0, the series' mean), embedding-level for text/DNA (baseline: "
                  "pad tokens)")
#: Default number of IG steps (Gauss-Legendre); enough for a small delta on the demo bundle.
DEFAULT_N_STEPS = 16

#: The stated convergence bound: ``|delta| <= DELTA_TOLERANCE * |f(x) - f(x')|`` (5 %).
DELTA_TOLERANCE = 0.05

#: ... or ``|delta| <= DELTA_FLOOR`` (probability units) when ``f(x) - f(x')`` is itself so small
#: that 5 % of it is below what float32 quadrature resolves.
DELTA_FLOOR = 1e-4

#: Cap of the adaptive steps (doubling from the requested steps: 16, 32, 64, 128).
MAX_N_STEPS = 128

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
        :class:`~anchorad_core.modality.Modality` -> :class:`~.maps.ModalityMap` (present
        modalities only).
    totals : dict
        :class:`~anchorad_core.modality.Modality` -> sum of its raw attributions (before mapping).
    output : float
        ``f(x)``: the round's probability of ``target`` for the subject.
    baseline_output : float
        ``f(x')`` at the all-baseline subject.
    delta : float
        Captum's convergence delta ``sum(attributions) - (f(x) - f(x'))`` at ``n_steps``.
    n_steps : int
        The steps of the run these maps come from (the last one of the adaptive search).
    seconds : float
    requested_steps : int
        The steps the search started from.
    max_steps : int
        Its cap.
    tolerance : float
        The bound, a fraction of ``|f(x) - f(x')|``.
    converged : bool
        Whether ``|delta| <= max(tolerance * |f(x) - f(x')|, DELTA_FLOOR)``.
    steps_tried : list of (steps, delta)
        Every run of the search, in order.
    """

    anchor: str
    target: str
    maps: dict[Modality, ModalityMap]
    totals: dict[Modality, float]
    output: float
    baseline_output: float
    delta: float
    n_steps: int
    seconds: float
    method: str = "LayerIntegratedGradients (gausslegendre)"
    attributed: list[str] = field(default_factory=list)
    requested_steps: int = 0
    max_steps: int = 0
    tolerance: float = DELTA_TOLERANCE
    converged: bool = True
    steps_tried: list[tuple[int, float]] = field(default_factory=list)

    @property
    def bound(self) -> float:
        """The bound on ``|delta|`` (probability units)."""
        return max(self.tolerance * abs(self.output - self.baseline_output), DELTA_FLOOR)

    def convergence_text(self) -> str:
        """One line: delta, its share of f(x) - f(x'), the steps and whether the bound was met."""
        share = f"{self.relative_delta:.1%} of |f(x) - f(x')| = {abs(self.output - self.baseline_output):.3g}"
        if self.converged:
            return (f"converged: delta {self.delta:+.2g} ({share}) at {self.n_steps} steps, within the "
                    f"{self.tolerance:.0%} bound")
        return self.warning

    @property
    def warning(self) -> str:
        """Empty when the bound was met, else a plain warning with the figure."""
        if self.converged:
            return ""
        return (f"NOT CONVERGED: delta {self.delta:+.2g} is {self.relative_delta:.0%} of |f(x) - f(x')| = "
                f"{abs(self.output - self.baseline_output):.3g} after {self.n_steps} steps (cap "
                f"{self.max_steps}); the bound is {self.tolerance:.0%}. Do not read these maps.")

    def to_dict(self) -> dict[str, Any]:
        """The convergence record (for JSON)."""
        return {
            "convergence_delta": self.delta, "relative_delta": self.relative_delta, "n_steps": self.n_steps,
            "requested_steps": self.requested_steps, "max_steps": self.max_steps, "tolerance": self.tolerance,
            "bound": self.bound, "converged": self.converged,
            "steps_tried": [{"n_steps": n, "delta": d} for n, d in self.steps_tried],
            "rule": (f"steps doubled from {self.requested_steps} up to {self.max_steps} until |delta| <= "
                     f"{self.tolerance:g} x |f(x) - f(x')| (or <= {DELTA_FLOOR:g})"),
        }

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
        # identity "layers" through which the raw sMRI / fMRI tensors pass (IG on the input);
        # torch's ModuleDict keys must be strings: keyed by the modality's value
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
                feats.tokens.expand(n, -1, -1), feats.mask.expand(n, -1), feats.present.expand(n),
                None if feats.readout is None else feats.readout.expand(n, -1),
            )
        for m in self.order:
            if m is self.anchor:
                continue
            with model.phase1(m) as backbone:  # LoRA of m off: its phase-1 features
                out = backbone(batches[m])
            aux[m] = AuxiliaryFeatures.of(out)
        anchor_batch = batches[self.anchor]
        result = model.anchored(self.anchor, anchor_batch, aux)  # anchor's LoRA on
        return torch.softmax(result.logits.float(), dim=-1)


def _baseline(modality: Modality, x: torch.Tensor, backbone: Any) -> torch.Tensor:
    if modality is Modality.SMRI:
        from scipy import ndimage

        sigma = (0,) * (x.ndim - 3) + (SMRI_BASELINE_SIGMA,) * 3
        blurred = ndimage.gaussian_filter(x.detach().float().cpu().numpy(), sigma)
        return torch.from_numpy(blurred).to(device=x.device, dtype=x.dtype)
    if modality is Modality.FMRI:
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
    adaptive: bool = True,
    max_steps: int = MAX_N_STEPS,
    tolerance: float = DELTA_TOLERANCE,
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
        IG steps (Gauss-Legendre) of the first run (the adaptive search starts there).
    internal_batch_size : int, optional
        Interpolation points per forward/backward pass (default
        ``min(n_steps, DEFAULT_INTERNAL_BATCH_SIZE)``; ``n_steps`` makes it one pass).
    auxiliaries : bool
        Also attribute to the auxiliary inputs, through the Q-former (default).
    adaptive : bool
        Double the steps from ``n_steps`` until ``|delta| <= tolerance * |f(x) - f(x')|`` (or
        ``|delta| <= DELTA_FLOOR``), up to ``max_steps`` (default). ``False``: one run of
        ``n_steps``. Either way the result says whether the bound was met
        (:attr:`RoundAttribution.converged`, :attr:`RoundAttribution.warning`).
    max_steps : int
        Cap of the adaptive steps (default :data:`MAX_N_STEPS`).
    tolerance : float
        The stated bound, a fraction of ``|f(x) - f(x')|`` (default :data:`DELTA_TOLERANCE`).

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
    ibs = internal_batch_size

    def _run(steps: int, recorder: "_Recorder | None") -> list:
        with torch.enable_grad(), (recorder if recorder is not None else contextlib.nullcontext()):
            out = _attribute(lig, inputs, baselines, target, steps, ibs)
        return [out] if len(layers) == 1 else list(out)

    recorder = _Recorder(fn, layers)
    steps = max(1, int(n_steps))
    cap = max(steps, int(max_steps)) if adaptive else steps
    attributions = _run(steps, recorder)
    with torch.no_grad():
        # f(x) and the baselines' layer outputs come from the two single-sample forwards Captum
        # makes before the path (for the layer values of the inputs and of the baselines), when
        # they were recorded; otherwise they are computed again
        f_x_out = _recorded_output(recorder, inputs)
        f_x = float((f_x_out if f_x_out is not None else fn(*inputs))[0, int(target)])
        f_b = float(_at_baseline(fn, layers, inputs, baselines, _recorded_layers(recorder, baselines))[0, int(target)])
    tried: list[tuple[int, float]] = []
    while True:
        # Captum's own delta check wants one layer row per example, which the DNA embedding
        # layer (one row per window) does not have; this is the same quantity.
        total = sum(float(_first(a).detach().double().sum()) for a in attributions)
        delta = total - (f_x - f_b)
        tried.append((steps, float(delta)))
        if _within_bound(delta, f_x - f_b, tolerance) or steps * 2 > cap:
            break
        steps *= 2
        attributions = _run(steps, None)
    converged = _within_bound(delta, f_x - f_b, tolerance)
    maps: dict[Modality, ModalityMap] = {}
    totals: dict[Modality, float] = {}
    for m, attr in zip(order, attributions):
        attr = _first(attr).detach().float().cpu()
        totals[m] = float(attr.sum())
        maps[m] = _map_attribution(m, attr, model, subject, batches[m])
    return RoundAttribution(
        anchor=anchor.value,
        target=labels[int(target)] if labels else str(int(target)),
        maps=maps,
        totals=totals,
        output=f_x,
        baseline_output=f_b,
        delta=float(delta),
        n_steps=int(steps),
        seconds=time.perf_counter() - start,
        attributed=[m.value for m in order],
        requested_steps=int(n_steps),
        max_steps=int(cap),
        tolerance=float(tolerance),
        converged=bool(converged),
        steps_tried=tried,
    )


def _first(a: Any) -> torch.Tensor:
    return a[0] if isinstance(a, (tuple, list)) else a


def _within_bound(delta: float, difference: float, tolerance: float) -> bool:
    """``|delta| <= tolerance * |f(x) - f(x')|``, or ``<= DELTA_FLOOR`` (see the module docstring)."""
    return abs(delta) <= max(tolerance * abs(difference), DELTA_FLOOR)


def _attribute(lig: Any, inputs: tuple, baselines: tuple, target: int, steps: int, ibs: "int | None") -> Any:
    return lig.attribute(
        inputs if len(inputs) > 1 else inputs[0],
        baselines=baselines if len(baselines) > 1 else baselines[0],
        target=int(target),
        n_steps=int(steps),
        method="gausslegendre",
        internal_batch_size=int(ibs or min(int(steps), DEFAULT_INTERNAL_BATCH_SIZE)),
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
    if call is None or recorder is None or len(call[2]) != len(recorder.layers):
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
        # (1, C, X, Y, Z) on the cube (input axis order), summed over channels; then restricted to
        # the brain, per parcel or smoothed (voxel-wise IG is speckle the model cannot resolve)
        voxels = volume_from_cube(attr[0].sum(dim=0).numpy(), subject.smri_geometry)
        info = getattr(subject, "fmri_info", None) or {}
        return brain_volume_attribution(voxels, lambda: _native_t1(subject), subject.smri_geometry,
                                        str(info.get("atlas") or "schaefer400_17n"))
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


def _native_t1(subject: Any) -> "Any":
    """The subject's T1 on its native grid (``None`` when it cannot be read)."""
    sources = getattr(subject, "sources", None) or {}
    path = sources.get(Modality.SMRI)
    if path is None:
        return None
    try:
        img = load_spatial_image(str(path))
        return np.asarray(img.get_fdata(dtype=np.float32)).reshape(img.shape[:3])
    except Exception:  # noqa: BLE001 - no T1 mask: the map's own support is used
        return None
