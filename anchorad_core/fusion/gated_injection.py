"""Zero-initialised gated injection of ``H_a`` into an anchor's self-attention.

Appending ``H_a`` to a pretrained anchor's tokens perturbs it from the first step even when
the tokens are zero (their keys and values are not). As LLaMA-Adapter's zero-init attention
(Zhang et al., 2023) does, every attention layer of an anchored pass therefore attends to
its own tokens and to the appended tokens with **separate** softmaxes, and adds the second
through a per-head gate ``tanh(g)`` that starts at 0::

    out = softmax(q K_own) V_own + tanh(g) · softmax(q K_extra) V_extra

At initialisation the anchor's own tokens are exactly what the anchor alone computes; the
gates open as phase 2 finds the auxiliary tokens useful (they receive gradient from the
first step). Every attention layer an anchored pass goes through (the UniFormer's stage 3
and 4, bridge included, the Brain-JEPA blocks, every layer of a Hugging Face model) uses
:func:`attend`.

Two context managers connect the pieces without threading arguments through model code:
:func:`gated_injection` (the anchored round: which gates) and :func:`extra_keys` (the
backbone: which key positions hold appended tokens).

Under gradient checkpointing a layer's forward runs again during the backward pass, after
both contexts have been left (and possibly in another thread). :func:`checkpoint_contexts` is
the ``context_fn`` of :func:`torch.utils.checkpoint.checkpoint` that replays them: the
recomputation sees the same gates, the same appended-key positions and the same gate index
as the original forward.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class _Injection:
    gates: Sequence[torch.Tensor]
    is_extra: "torch.Tensor | None" = None
    calls: int = 0


_ACTIVE: contextvars.ContextVar["_Injection | None"] = contextvars.ContextVar("anchorad_injection", default=None)


@contextlib.contextmanager
def gated_injection(gates: Iterable[torch.Tensor]) -> Iterator[None]:
    """Use ``gates`` (one ``(heads,)`` or scalar tensor per attention layer, in call order)."""
    token = _ACTIVE.set(_Injection(list(gates)))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def extra_keys(is_extra: "torch.Tensor | None") -> Iterator[None]:
    """Mark which key positions ``(B, K)`` hold appended tokens for the attention calls inside."""
    state = _ACTIVE.get()
    if state is None or is_extra is None:
        yield
        return
    previous = state.is_extra
    state.is_extra = is_extra
    try:
        yield
    finally:
        state.is_extra = previous


def checkpoint_contexts() -> "tuple[contextlib.AbstractContextManager[None], contextlib.AbstractContextManager[None]]":
    """``context_fn`` of a non-reentrant :func:`torch.utils.checkpoint.checkpoint`: (forward, recompute).

    Called when a checkpointed layer starts its forward; the recompute context re-enters the
    injection state of that moment (gates, appended-key positions, index of the layer's gate),
    so that the recomputed layer attends exactly as the original one did.
    """
    state = _ACTIVE.get()
    if state is None:
        return contextlib.nullcontext(), contextlib.nullcontext()
    snapshot = _Injection(state.gates, state.is_extra, state.calls)
    return contextlib.nullcontext(), _replayed(snapshot)


@contextlib.contextmanager
def _replayed(snapshot: _Injection) -> Iterator[None]:
    token = _ACTIVE.set(_Injection(snapshot.gates, snapshot.is_extra, snapshot.calls))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def injection_active() -> bool:
    """Whether an anchored pass with gates is running."""
    return _ACTIVE.get() is not None


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: "torch.Tensor | None" = None,
    scale: "float | None" = None,
    dropout: float = 0.0,
    causal: bool = False,
) -> torch.Tensor:
    """Scaled dot-product attention ``(B, H, Q, D)``, gated over appended keys when active.

    ``mask`` is boolean (``True`` = may attend) or additive, broadcastable to ``(B, H, Q, K)``.
    Outside an anchored pass (or with no appended keys) this is plain
    :func:`torch.nn.functional.scaled_dot_product_attention`.
    """
    state = _ACTIVE.get()
    if state is None or state.is_extra is None:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout,
                                              is_causal=causal and mask is None, scale=scale)
    if state.calls >= len(state.gates):
        raise RuntimeError(f"anchored pass has {len(state.gates)} attention gates but more attention layers ran")
    gate = torch.tanh(state.gates[state.calls]).to(query.dtype).reshape(1, -1, 1, 1)
    state.calls += 1
    q_len, k_len = query.shape[-2], key.shape[-2]
    allowed = torch.ones(1, 1, 1, k_len, dtype=torch.bool, device=query.device)
    if mask is not None:  # boolean, or additive with large negatives where masked
        allowed = mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
    if causal:
        allowed = allowed & torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
    extra = state.is_extra.to(query.device)[:, None, None, :]
    own_keys, aux_keys = allowed & ~extra, allowed & extra
    # A query with no allowed appended key (every auxiliary block of the subject missing)
    # attends to its own keys in the second call instead, and that contribution is dropped:
    # finite values and gradients, no NaN from an all-masked softmax.
    # The same for a query with no own key (an appended prefix token of a causal decoder).
    has_aux, has_own = aux_keys.any(dim=-1, keepdim=True), own_keys.any(dim=-1, keepdim=True)
    aux_keys = torch.where(has_aux, aux_keys, own_keys)
    own_keys = torch.where(has_own, own_keys, aux_keys)
    own = F.scaled_dot_product_attention(query, key, value, attn_mask=own_keys, dropout_p=dropout, scale=scale)
    aux = F.scaled_dot_product_attention(query, key, value, attn_mask=aux_keys, dropout_p=dropout, scale=scale)
    return own * has_own.to(own.dtype) + gate * aux * has_aux.to(aux.dtype)


def new_gates(heads: Sequence[int]) -> nn.ParameterList:
    """One zero-initialised per-head gate for each attention layer (``heads[i]`` heads)."""
    return nn.ParameterList([nn.Parameter(torch.zeros(h)) for h in heads])


def _hf_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: "torch.Tensor | None", scaling: "float | None" = None, dropout: float = 0.0,
                  **kwargs: object) -> tuple[torch.Tensor, None]:
    """The Hugging Face attention-interface form of :func:`attend` (registered as ``anchorad_gated``)."""
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention (LLaMA): repeat the key/value heads
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    if attention_mask is not None and attention_mask.shape[-1] != key.shape[-2]:
        attention_mask = attention_mask[..., : key.shape[-2]]
    causal = bool(getattr(module, "is_causal", False)) and query.shape[-2] > 1
    out = attend(query, key, value, attention_mask, scaling, dropout if module.training else 0.0,
                 causal=causal and attention_mask is None)
    return out.transpose(1, 2).contiguous(), None


HF_ATTENTION = "anchorad_gated"


def use_gated_attention(model: nn.Module) -> None:
    """Route a Hugging Face model's attention through :func:`attend` (same results until gated)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(HF_ATTENTION, _hf_attention)
    if HF_ATTENTION not in ALL_MASK_ATTENTION_FUNCTIONS:  # boolean masks, as SDPA takes them
        ALL_MASK_ATTENTION_FUNCTIONS.register(HF_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    config = getattr(model, "config", None)
    if config is not None:
        config._attn_implementation = HF_ATTENTION
