"""Brain-JEPA checkpoint conversion: the released ``.pth.tar`` (or a bare / fine-tuned state dict) into a :class:`BrainJEPABackbone`."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ...errors import CheckpointError
from ..checkpoints import CheckpointReport, load_checked, read_checkpoint, select_state_dict, strip_prefixes

if TYPE_CHECKING:
    from .modeling import BrainJEPABackbone


def load_brainjepa_checkpoint(
    model: BrainJEPABackbone, path: "str | Path", key: str = "target_encoder"
) -> CheckpointReport:
    """Load a Brain-JEPA checkpoint into ``model`` as the original downstream code does.

    The pretraining file (``src/train.py``) is ``torch.save({"encoder", "predictor",
    "target_encoder", "opt", "scaler", "epoch", ...})`` with DDP keys ``module.<key>``. The
    fine-tuning code takes ``checkpoint["target_encoder"]`` (the EMA encoder) and strips the
    ``module.`` prefix; ``fc_norm`` is not in the file and starts at LayerNorm's (1, 0). A bare
    state dict or ``.safetensors`` of the bare keys is accepted too, and so is a fine-tuned
    ``models_vit`` state dict (``encoder.`` prefix; its ``fc_norm`` is loaded and its ``head``
    skipped).

    ``pos_embed_proj.emb_h`` is a fixed function of the token grid; when the checkpoint was
    trained on another number of frames it is skipped and the model's own table is kept.

    Raises
    ------
    CheckpointError
        Naming the file, if it cannot be read safely, has no ``key`` entry, or does not fit
        the architecture (e.g. a gradient file with another number of columns).
    """
    path = Path(path)
    report = CheckpointReport(path=path)
    raw = select_state_dict(read_checkpoint(path), path, (key,))
    state: dict[str, torch.Tensor] = {}
    for name, tensor in raw.items():
        bare = strip_prefixes(name, ("module.", "encoder."))
        if bare.startswith("head."):
            report.skipped[name] = "downstream classification head (not part of the backbone)"
            continue
        state[bare] = tensor
    own = model.state_dict()
    emb = state.get("pos_embed_proj.emb_h")
    own_emb = own["pos_embed_proj.emb_h"]
    if emb is not None and emb.shape[0] != own_emb.shape[0] and emb.shape[1:] == own_emb.shape[1:]:
        state.pop("pos_embed_proj.emb_h")
        report.skipped["pos_embed_proj.emb_h"] = "token grid differs; the fixed sin-cos table is recomputed"
        report.notes.append(
            f"The checkpoint's positional table covers {emb.shape[0]} tokens, the model "
            f"{model.num_tokens}; the fixed sin-cos half was recomputed for the model's grid.")
    proj = state.get("pos_embed_proj.predictor_pos_embed_proj.weight")
    if proj is not None and proj.shape[1] != model.gradient.shape[2]:
        raise CheckpointError(
            f"checkpoint expects {proj.shape[1]} gradient columns but {model._gradient_file.name} "
            f"has {model.gradient.shape[2]}", path)
    allowed = ("fc_norm.", "pos_embed_proj.emb_h")
    report = load_checked(model, state, report, allowed_missing=allowed)
    if any(k.startswith("fc_norm.") for k in report.left_initialised):
        report.notes.append("fc_norm starts at LayerNorm's (1, 0), as in the original fine-tuning code.")
    return report
