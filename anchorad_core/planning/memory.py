"""The peak-memory estimate of one anchored round's training step (bfloat16, batch size ``B``).

``peak = weights + trainable state + activations``, in bytes:

* **weights**: every frozen parameter on the device at 2 bytes (bfloat16): the anchor's and
  the other three backbones' (the trainer keeps the whole model on one device), plus the
  other rounds' parameters at 4 bytes (float32, as they were trained);
* **trainable state**: 16 bytes per trainable parameter. Phase 2 keeps them in float32 (peft
  casts LoRA adapters to float32; the round is built in float32): weight 4 + gradient 4 +
  AdamW's two moments 8;
* **activations** (what autograd keeps for the backward pass), summed over the anchor's
  transformer layers. A layer over ``s`` tokens (its own plus the ``E`` appended ``H_a``
  tokens, per sequence, ``n`` sequences per subject) keeps ``B·n·s·a`` bytes, with ``a`` per
  token counted from the layer's modules (frozen weights need no input for their gradient;
  measured against autograd's saved tensors in ``tests/unit/test_plan.py``)::

      a = Σ_norms (4h + 4 if RMSNorm (float32 upcast) else 2h + 8)
        + Σ_LoRA'd linears (4·d_in + 4r, + d_in·m with LoRA dropout)      # float32 input copy, A·x, mask
        + 2·(3h + c·h) + 4·c·heads + 2·c·s·[4-D masks] + 4               # q, k, v, c outputs, logsumexp, masks
        + 2f·(2u − 1)                                                      # MLP: GELU input (u=1) or SwiGLU (u=2)

  where ``h`` is the layer width, ``f`` the MLP width, ``u`` its up projections (1, or 2 for a
  gated MLP), ``r`` the LoRA rank and ``c`` the attention calls per layer (2 with the gated
  injection: one softmax over the own keys, one over ``H_a``; 1 otherwise). Each call keeps its
  mask as a bfloat16 bias; Hugging Face models build ``(s, s)`` masks, the UniFormer and
  Brain-JEPA key masks (negligible). LoRA dropout
  keeps its mask: 1 byte per input value on a GPU (fused dropout; the CPU keeps a 4-byte
  mask). On top: the backbone's output (final norm input, float32 copies for unpacking and
  pooling: ``20h`` per token of the last layer; 4-22h measured across the families), the Q-former
  (``4·(C_m + 6D)`` per auxiliary token, float32) and, while a layer is back-propagated, its
  gradients (``4·s·(h + f)`` per sequence).

  With **gradient checkpointing** (Hugging Face backbones) every layer keeps only its input
  (``2h`` per token) and the layer being back-propagated is recomputed: activations =
  ``Σ_layers B·n·s·2h`` + one layer's ``B·n·s·a`` + the same extras.

The estimate leaves out the allocator's fragmentation and the CUDA context (about 0.5 GiB).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from torch import nn

from ..fusion.lora import LoraSettings
from ..modality import Modality
from .backbone_shape import BackboneShape, LayerStack

BF16 = 2
FP32 = 4
#: Bytes per trainable parameter: float32 weight, gradient and AdamW's two moments.
TRAINABLE_BYTES = FP32 * 4
#: Bytes of LoRA dropout's mask per input value (``m``): a GPU's fused dropout keeps a bool mask.
DROPOUT_MASK_BYTES = 1
#: Bytes per token and unit of width after the last layer: final norm input, float32 copies of the output.
OUTPUT_BYTES_PER_WIDTH = 20


@dataclass
class ActivationEstimate:
    """Activation bytes of one training step of an anchored round.

    Attributes
    ----------
    layers
        What the anchor's layers keep without checkpointing.
    layer_inputs
        What they keep with checkpointing (each layer's input).
    largest_layer
        The most one layer keeps (recomputed once at a time with checkpointing).
    working
        Gradients of the layer being back-propagated.
    outside
        The backbone's output and the Q-former's activations.
    checkpointing
        Whether the anchor supports gradient checkpointing.
    """

    layers: int
    layer_inputs: int
    largest_layer: int
    working: int
    outside: int
    checkpointing: bool

    @property
    def without_checkpointing(self) -> int:
        """Activation bytes of a plain training step."""
        return self.layers + self.working + self.outside

    @property
    def with_checkpointing(self) -> int:
        """Activation bytes with gradient checkpointing (the plain figure where it is not supported)."""
        if not self.checkpointing:
            return self.without_checkpointing
        return self.layer_inputs + self.largest_layer + self.working + self.outside


def is_rms_norm(module: nn.Module) -> bool:
    """An RMSNorm (Transformers' upcast their input to float32)."""
    return "rmsnorm" in type(module).__name__.lower()


def is_layer_norm(module: nn.Module) -> bool:
    """A LayerNorm (PyTorch's or a model's own class)."""
    return isinstance(module, nn.LayerNorm) or type(module).__name__.lower().endswith("layernorm")


def layer_bytes_per_token(
    layer: nn.Module, lora_linears: Sequence[nn.Linear], tokens: int, heads: int, attention_calls: int,
    lora: LoraSettings, query_key_masks: bool = True,
) -> "tuple[int, int, int]":
    """``(a, h, f)``: bytes one layer keeps per token (module docstring), its width and MLP width.

    ``tokens`` is the sequence length ``(s, s)`` attention masks span (``query_key_masks``).
    """
    width = int(lora_linears[0].in_features)
    lora_ids = {id(m) for m in lora_linears}
    norms = [m for m in layer.modules() if is_rms_norm(m) or is_layer_norm(m)]
    norm_bytes = sum(FP32 * width + 4 if is_rms_norm(m) else BF16 * width + 8 for m in norms)
    per_input = FP32 + (DROPOUT_MASK_BYTES if lora.dropout > 0 else 0)
    lora_bytes = sum(per_input * m.in_features + FP32 * lora.r for m in lora_linears)
    c = attention_calls
    masks = BF16 * c * tokens if query_key_masks else 0
    attention_bytes = BF16 * (3 * width + c * width) + FP32 * c * heads + masks + 4
    ups = [m for m in layer.modules() if isinstance(m, nn.Linear) and id(m) not in lora_ids
           and m.in_features == width and m.out_features > width]
    mlp_width = int(ups[0].out_features) if ups else 0
    mlp_bytes = BF16 * mlp_width * (2 * len(ups) - 1) if ups else 0
    return norm_bytes + lora_bytes + attention_bytes + mlp_bytes, width, mlp_width


def estimate_activations(
    anchor: BackboneShape,
    appended_tokens: int,
    aux_tokens: "Mapping[Modality, tuple[int, int]]",
    qformer_width: int,
    lora: LoraSettings,
    gated: bool = True,
    batch_size: int = 1,
) -> ActivationEstimate:
    """Activation bytes of one training step of ``anchor``'s round (module docstring).

    Parameters
    ----------
    anchor
        The anchor's shape (its layer stacks carry their token counts).
    appended_tokens
        ``E``: the length of ``H_a``.
    aux_tokens
        ``{modality: (tokens per subject, width)}`` of the auxiliary modalities.
    qformer_width
        ``D``.
    lora
        LoRA rank and dropout.
    gated
        Whether ``H_a`` enters through the gated injection (two attention calls per layer).
    batch_size
        Subjects per step.
    """
    calls = 2 if gated and appended_tokens > 0 else 1
    heads = iter(anchor.attention_heads)
    layers = inputs = largest = working = last_width = 0
    for stack in anchor.stacks:
        s = stack.tokens + appended_tokens
        rows = batch_size * stack.sequences * s
        for layer, linears in zip(stack.layers, stack.lora_linears):
            per_token, width, mlp_width = layer_bytes_per_token(layer, linears, s, next(heads, 1), calls, lora,
                                                                anchor.query_key_masks)
            layers += rows * per_token
            inputs += rows * BF16 * width
            largest = max(largest, rows * per_token)
            working = max(working, rows * FP32 * (width + mlp_width))
            last_width = width
    last = anchor.stacks[-1] if anchor.stacks else None
    output = batch_size * (last.sequences * (last.tokens + appended_tokens) if last else 0) * OUTPUT_BYTES_PER_WIDTH * last_width
    qformer = batch_size * sum(n * FP32 * (c + 6 * qformer_width) for n, c in aux_tokens.values())
    return ActivationEstimate(layers, inputs, largest, working, output + qformer, anchor.checkpointing)


def subject_tokens(shape: BackboneShape) -> int:
    """Tokens one subject's phase-1 features have (the last stack's, over its sequences)."""
    if not shape.stacks:
        return 0
    last: LayerStack = shape.stacks[-1]
    return last.tokens * last.sequences
