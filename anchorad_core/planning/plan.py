"""``anchorad backbones --plan``: what each anchored round of a run trains and needs, before any weight exists.

For the chosen backbones (default: the paper's, :data:`PAPER_PRESETS`) and the round settings
of a :class:`~anchorad_core.training.config.TrainConfig`, every backbone is built on the meta
device (:mod:`.backbone_shape`), and per anchor round the plan gives the trainable parameters
split into LoRA, Q-former, projections, gates and head (:mod:`.round_parameters`), the frozen
ones, and the peak memory of one bfloat16 training step at batch size ``B`` with and without
gradient checkpointing (:mod:`.memory`, whose docstring is the formula).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..backbones.inventory import format_bytes, format_count
from ..errors import ConfigError
from ..modality import ALL_MODALITIES, Modality
from ..training.config import BackboneSpec, TrainConfig
from .backbone_shape import DEFAULT_GENETICS_WINDOWS, BackboneShape, backbone_shape
from .memory import BF16, FP32, TRAINABLE_BYTES, ActivationEstimate, estimate_activations, subject_tokens
from .round_parameters import GROUPS, RoundParameters, count_round_parameters, inject_lora, meta_round

#: The paper's backbones: BrainMVP's UniFormer-S, Brain-JEPA ViT-B, LLaMA-2 13B, Nucleotide Transformer 500M.
PAPER_PRESETS: dict[Modality, str] = {
    Modality.SMRI: "brainmvp-uniformer-s",
    Modality.FMRI: "brainjepa-vit-b",
    Modality.CLINICAL: "llama-2-13b",
    Modality.GENETICS: "nt-v1-500m-human-ref",
}


@dataclass
class _RoundPlan:
    """What one anchored round trains and holds (before it is written as JSON)."""

    anchor: Modality
    shape: BackboneShape
    parameters: RoundParameters
    activations: ActivationEstimate
    appended_tokens: int


def presets_by_modality(names: "list[str]") -> dict[Modality, str]:
    """``["llama-2-7b", ...]`` -> ``{"clinical": "llama-2-7b", ...}`` (one preset per modality).

    Raises
    ------
    ConfigError
        For an unknown preset or two presets of one modality.
    """
    from ..backbones import registry

    out: dict[Modality, str] = {}
    for name in names:
        config = registry.resolve_config(name)
        modality = registry.families()[config["family"]].modality
        if modality in out:
            raise ConfigError(f"--presets: {out[modality]} and {name} are both {modality.value} backbones; "
                              "give one per modality")
        out[modality] = name
    if not out:
        raise ConfigError("--presets: no preset given")
    return out


def plan_run(
    config: "TrainConfig | None" = None,
    backbones: "Mapping[Modality, BackboneSpec] | Mapping[str, BackboneSpec] | None" = None,
    batch_size: int = 1,
    genetics_windows: int = DEFAULT_GENETICS_WINDOWS,
    num_classes: int = 2,
    base_dir: "Path | None" = None,
) -> dict[str, Any]:
    """The JSON-ready plan of a run (module docstring).

    Parameters
    ----------
    config
        Round settings (``num_queries``, Q-former shape, LoRA, gate, readout keys); default
        ``TrainConfig()``, the paper's settings.
    backbones
        Backbone spec per modality (or its name); default ``config.backbones``, else :data:`PAPER_PRESETS`.
    batch_size
        Subjects per training step.
    genetics_windows
        DNA windows per subject of the Nucleotide Transformer estimate.
    num_classes
        Labels of the task (2 for the binary tasks).
    base_dir
        Folder relative paths in the configs refer to.
    """
    config = copy.deepcopy(config) if config is not None else TrainConfig()
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    given = backbones or config.backbones or PAPER_PRESETS
    specs = {Modality.parse(m): spec for m, spec in given.items()}
    shapes: dict[Modality, BackboneShape] = {}
    for m in ALL_MODALITIES:
        if m in specs:
            shape = backbone_shape(specs[m], base_dir, genetics_windows)
            if shape.modality is not m:
                raise ConfigError(f"backbones.{m.value}: {shape.name} is a {shape.modality.value} backbone")
            shapes[m] = shape
    rounds: list[_RoundPlan] = []
    for anchor, shape in shapes.items():
        aux = {m: s for m, s in shapes.items() if m is not anchor}
        round_ = meta_round(shape, aux, num_classes, config.num_queries, config.qformer_heads, config.qformer_depth,
                            config.qformer_width, config.gated, config.readout_keys)
        appended = round_.qformer.num_tokens if aux else 0
        activations = estimate_activations(
            shape, appended, {m: (subject_tokens(s), s.width) for m, s in aux.items()}, config.qformer_width,
            config.lora, config.gated, batch_size)
        inject_lora(shape, config.lora)
        parameters = count_round_parameters(shape, round_)
        rounds.append(_RoundPlan(anchor, shape, parameters, activations, appended))
    backbone_params = sum(s.parameters for s in shapes.values())
    heads = sum(num_classes * (s.pooled_width + 1) for s in shapes.values())
    out_rounds = []
    for r in rounds:
        others = sum(o.parameters.trainable for o in rounds if o is not r)
        weights = BF16 * backbone_params + FP32 * (others + heads)
        state = TRAINABLE_BYTES * r.parameters.trainable
        act = r.activations
        out_rounds.append({
            "anchor": r.anchor.value,
            "preset": r.shape.name,
            "parameters": r.parameters.to_dict(),
            "appended_tokens": r.appended_tokens,
            "layers": [{"stack": st.name, "layers": len(st.layers), "tokens": st.tokens + r.appended_tokens,
                        "sequences": st.sequences} for st in r.shape.stacks],
            "memory": {
                "weights_bytes": weights,
                "trainable_state_bytes": state,
                "activations_bytes": act.without_checkpointing,
                "activations_checkpointed_bytes": act.with_checkpointing,
                "peak_bytes": weights + state + act.without_checkpointing,
                "peak_checkpointed_bytes": weights + state + act.with_checkpointing,
                "checkpointing": act.checkpointing,
            },
        })
    return {
        "dtype": "bfloat16",
        "batch_size": batch_size,
        "settings": {"num_queries": config.num_queries, "qformer_width": config.qformer_width,
                     "qformer_depth": config.qformer_depth, "qformer_heads": config.qformer_heads,
                     "lora": config.lora.to_dict(), "gated": config.gated, "readout_keys": config.readout_keys,
                     "genetics_windows": genetics_windows, "num_classes": num_classes},
        "backbones": [{"modality": m.value, "preset": s.name, "family": s.family, "parameters": s.parameters,
                       "width": s.width, "tokens_per_subject": subject_tokens(s), "checkpointing": s.checkpointing,
                       "note": s.note} for m, s in shapes.items()],
        "resident_backbone_parameters": backbone_params,
        "rounds": out_rounds,
    }


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as text: the backbones, then one row per anchor round."""
    s = plan["settings"]
    lora = s["lora"]
    lines = [f"Plan of a training run: {plan['dtype']}, batch size {plan['batch_size']}, N_q={s['num_queries']}, "
             f"Q-former width {s['qformer_width']} (depth {s['qformer_depth']}), LoRA r={lora['r']} "
             f"(dropout {lora['dropout']:g}), {'gated' if s['gated'] else 'ungated'} injection", ""]
    width = max(len(b["preset"]) for b in plan["backbones"])
    for b in plan["backbones"]:
        note = f"  ({b['note']})" if b["note"] else ""
        lines.append(f"  {b['modality']:<9} {b['preset']:<{width}}  {format_count(b['parameters']):>7} parameters, "
                     f"{b['tokens_per_subject']} tokens of width {b['width']} per subject{note}")
    lines.append("")
    header = ["anchor round", "LoRA", "Q-former", "proj.", "gates", "head", "trainable", "frozen",
              "peak", "peak, checkpointed"]
    table = [header]
    for r in plan["rounds"]:
        p, mem = r["parameters"], r["memory"]
        checkpointed = format_bytes(mem["peak_checkpointed_bytes"]) if mem["checkpointing"] else "n/a (not HF)"
        table.append([f"{r['anchor']} ({r['preset']})", *(format_count(p[g]) for g in GROUPS),
                      format_count(p["trainable"]), format_count(p["frozen"]), format_bytes(mem["peak_bytes"]),
                      checkpointed])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        cells = [c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [
        "",
        "peak = frozen weights of all backbones (bf16) + other rounds (fp32) + 16 B per trainable parameter "
        "(fp32 weight, gradient, AdamW moments) + activations (anchorad_core.planning.memory).",
        "Token counts are upper bounds where inputs vary: notes at max_length, "
        f"{s['genetics_windows']} DNA windows of max_length tokens.",
    ]
    return "\n".join(lines)
