"""What the planner needs to know of a backbone, read from its meta-device build.

:func:`backbone_shape` builds a backbone config with
:func:`~anchorad_core.backbones.inventory.meta_build` (no weight gets storage) and reads its
widths, attention layers, LoRA targets and layer stacks. For the published Hugging Face models
whose ``model_path`` is not set (``llama-2-13b``, ``nt-v1-500m-human-ref``) that build is the
bare Transformers model of the preset's reference architecture, not a backbone object; the
same facts are then read from its ``config`` (they are what the backbone would declare).

Tokens per sequence, the one thing no module says, come from the config
(:func:`own_tokens`): the UniFormer's stage grids, Brain-JEPA's ROI x time patches, the text
model's ``max_length`` (notes are truncated to it: an upper bound), and for the Nucleotide
Transformer windows of ``max_length`` tokens, ``genetics_windows`` per subject (default 2:
the two haplotype strings, each within one window up to about 6 kb).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..backbones import registry
from ..backbones.base import ModalityBackbone
from ..backbones.hf_common import attention_lora_regex
from ..backbones.inventory import meta_build
from ..errors import ConfigError
from ..modality import Modality

#: Windows of a subject's DNA the Nucleotide Transformer estimate assumes (two haplotypes).
DEFAULT_GENETICS_WINDOWS = 2


@dataclass
class LayerStack:
    """One stack of transformer layers an anchored pass goes through.

    Attributes
    ----------
    name
        Attribute path of the ``nn.ModuleList`` (``blocks3``, ``layers``, ``encoder.layer``).
    layers
        Its layer modules (parameters on ``meta``).
    tokens
        The backbone's own tokens per sequence in these layers (``H_a`` comes on top).
    sequences
        Sequences per subject (the Nucleotide Transformer's windows; 1 otherwise).
    lora_linears
        Per layer, its ``nn.Linear`` modules that get a LoRA adapter.
    """

    name: str
    layers: list[nn.Module]
    tokens: int
    sequences: int = 1
    lora_linears: list[list[nn.Linear]] = field(default_factory=list)


@dataclass
class BackboneShape:
    """A backbone's widths, LoRA targets and layer stacks, from its meta-device build.

    Attributes
    ----------
    spec
        The preset name or config it was built from.
    config
        The resolved config.
    module
        The meta-device build: the backbone, or the bare Hugging Face model (see the module docstring).
    parameters
        Its parameter count.
    width, extra_token_width, pooled_width
        Token width ``C``, width of appended tokens, readout width ``P``.
    attention_heads
        Heads of every attention layer appended tokens pass through (one gate each).
    lora_target_modules, trainable_modules
        peft ``target_modules`` and ``modules_to_save`` of its anchored round.
    stacks
        Its transformer layer stacks with their token counts.
    checkpointing
        Whether ``TrainConfig.gradient_checkpointing`` applies to it (a Hugging Face model).
    query_key_masks
        Whether its attention masks are ``(B, 1, s, s)`` (Hugging Face models build them so);
        the UniFormer's and Brain-JEPA's are key masks ``(B, 1, 1, s)``.
    note
        How a missing file or ``model_path`` was stood in for while building (``""`` if not).
    """

    spec: "str | dict[str, Any]"
    config: dict[str, Any]
    module: nn.Module
    parameters: int
    width: int
    extra_token_width: int
    pooled_width: int
    attention_heads: list[int]
    lora_target_modules: "list[str] | str"
    trainable_modules: list[str]
    stacks: list[LayerStack] = field(default_factory=list)
    checkpointing: bool = False
    query_key_masks: bool = False
    note: str = ""

    @property
    def family(self) -> str:
        """Registry family name."""
        return str(self.config["family"])

    @property
    def modality(self) -> Modality:
        """The modality it encodes."""
        return registry.families()[self.family].modality

    @property
    def name(self) -> str:
        """Preset name, or the family for an inline config."""
        if isinstance(self.spec, str):
            return self.spec
        return str(self.spec.get("preset") or self.family)


def backbone_shape(
    spec: "str | dict[str, Any]", base_dir: "Path | None" = None, genetics_windows: int = DEFAULT_GENETICS_WINDOWS
) -> BackboneShape:
    """Build ``spec`` on the meta device and read what the planner needs (module docstring).

    Raises
    ------
    ConfigError
        For an unknown preset or family, or a family whose token counts the planner does not know.
    """
    config = registry.resolve_config(spec)
    built = meta_build(config, base_dir)
    module = built.module
    parameters = sum(p.numel() for p in module.parameters())
    cls = registry.families()[config["family"]]
    if isinstance(module, ModalityBackbone):
        width, extra, pooled = module.width, module.extra_token_width, module.pooled_width
        heads, targets = list(module.attention_heads), module.lora_target_modules
        hf = getattr(module, "model", None)
    else:  # the bare Hugging Face model of a published architecture
        from transformers import PretrainedConfig

        hf_config = getattr(module, "config", None)
        if not isinstance(hf_config, PretrainedConfig):
            raise ConfigError(f"{config['family']}: the meta build is neither a backbone nor a Hugging Face model")
        width = extra = int(hf_config.hidden_size)
        pooled = width * (2 if config.get("number_readout") else 1)
        heads = [int(hf_config.num_attention_heads)] * int(hf_config.num_hidden_layers)
        targets = attention_lora_regex(module, getattr(hf_config, "model_type", None))
        hf = module
    shape = BackboneShape(
        spec=spec, config=config, module=module, parameters=int(parameters), width=int(width),
        extra_token_width=int(extra), pooled_width=int(pooled), attention_heads=heads,
        lora_target_modules=targets, trainable_modules=list(cls.phase2_trainable_modules),
        checkpointing=bool(getattr(hf, "supports_gradient_checkpointing", False)), query_key_masks=hf is not None,
        note=built.note,
    )
    shape.stacks = layer_stacks(shape, own_tokens(config, module, genetics_windows))
    return shape


def own_tokens(config: dict[str, Any], module: nn.Module, genetics_windows: int = DEFAULT_GENETICS_WINDOWS) -> "dict[str, tuple[int, int]]":
    """``{stack name or "*": (own tokens per sequence, sequences per subject)}`` of a config.

    Raises
    ------
    ConfigError
        For a family whose sequence length the planner does not know.
    """
    family = config["family"]
    if family == "uniformer3d":
        size = int(config.get("img_size", 96))
        return {"blocks3": ((size // 8) ** 3, 1), "blocks4": ((size // 16) ** 3, 1)}
    if family == "brainjepa":
        frames = int(config.get("n_frames", 160)) // int(config.get("patch_size", 16))
        return {"blocks": (int(config.get("n_rois", 450)) * frames, 1)}
    if family == "hf-text":
        return {"*": (int(config.get("max_length", 256)), 1)}
    if family == "nucleotide-transformer":
        from ..backbones.nucleotide_transformer import _position_limit  # the backbone's own rule

        hf_config = getattr(module, "model", module).config
        limit = _position_limit(hf_config, None)
        length = int(config.get("max_length") or limit)
        if genetics_windows < 1:
            raise ConfigError(f"genetics windows must be at least 1, got {genetics_windows}")
        return {"*": (min(length, limit), int(genetics_windows))}
    raise ConfigError(f"the planner does not know the sequence length of {family!r} backbones")


def layer_stacks(shape: BackboneShape, tokens: "dict[str, tuple[int, int]]") -> list[LayerStack]:
    """Every ``nn.ModuleList`` of ``shape.module`` whose layers hold LoRA targets, with its tokens."""
    modules = dict(shape.module.named_modules())
    targets = lora_target_names(shape.module, shape.lora_target_modules)
    stacks: list[LayerStack] = []
    for name, child in modules.items():
        if not isinstance(child, nn.ModuleList) or not name or any(name.startswith(f"{s.name}.") for s in stacks):
            continue
        layers, linears = [], []
        for i, layer in enumerate(child):
            own = [modules[t] for t in targets if t.startswith(f"{name}.{i}.")]
            if own:
                layers.append(layer)
                linears.append(own)
        if not layers:
            continue
        key = name if name in tokens else "*"
        if key not in tokens:
            raise ConfigError(f"{shape.family}: no token count for the layer stack {name!r}")
        n, sequences = tokens[key]
        stacks.append(LayerStack(name, layers, int(n), int(sequences), linears))
    return stacks


def lora_target_names(module: nn.Module, targets: "list[str] | str") -> list[str]:
    """Names of the ``nn.Linear`` modules peft's ``target_modules`` selects (its matching rule)."""
    names = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if isinstance(targets, str):
        return [n for n in names if re.fullmatch(targets, n)]
    return [n for n in names if any(n == t or n.endswith(f".{t}") for t in targets)]
