"""BrainMVP checkpoint conversion: the released ``.pt`` (or bare state dict / safetensors) into a :class:`UniFormer3DBackbone`."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ...errors import CheckpointError
from ..checkpoints import CheckpointReport, load_checked, read_checkpoint, select_state_dict, strip_prefixes
from .config import InChannelsRule

if TYPE_CHECKING:
    from .modeling import UniFormer3DBackbone


def load_brainmvp_checkpoint(
    model: UniFormer3DBackbone,
    path: "str | Path",
    in_channels_rule: "InChannelsRule | None" = None,
) -> CheckpointReport:
    """Load a BrainMVP pretraining checkpoint into ``model``, like the original downstream code.

    The file is ``torch.save({"state_dict": {...}, ...})`` with keys
    ``module.encoder.uniformer.<key>`` (a bare state dict or a ``.safetensors`` file of the
    bare keys also works). Steps:

    1. read with ``weights_only=True`` (a pickle carrying code is refused);
    2. strip the ``module.`` / ``encoder.`` / ``uniformer.`` prefixes;
    3. skip the pretraining-only entries ``decoder.*`` and ``rep_template``;
    4. apply ``in_channels_rule`` to ``patch_embed1.proj`` when the checkpoint's input
       channels differ from ``model.in_chans``:

       * ``"skip"`` (default; what ``Downstream/train_script.py`` does): leave the first conv
         (weight and bias) at its initial values; ``patch_embed1.norm`` is still loaded.
       * ``"repeat"``: adapt the kernel: summed over the checkpoint's channels when the model
         has 1 channel, else tiled over the model's channels and scaled by
         ``ckpt_in / model_in``, so an image copied into every channel gives the original
         response.
       * ``"error"``: raise :class:`CheckpointError`.

       With equal channels the conv is loaded as is;
    5. check every remaining name and shape (``extra_bridge`` may be missing: it is new).

    Returns
    -------
    CheckpointReport
        What was loaded, skipped and left at its initial values.

    Raises
    ------
    CheckpointError
        Naming the file, if it cannot be read safely or does not fit the architecture.
    """
    path = Path(path)
    rule = in_channels_rule or model.in_channels_rule
    report = CheckpointReport(path=path)
    raw = select_state_dict(read_checkpoint(path), path, ("state_dict", "model", "encoder"))
    state: dict[str, torch.Tensor] = {}
    for key, tensor in raw.items():
        bare = strip_prefixes(key, ("module.", "encoder.", "uniformer."))
        if bare.startswith("decoder.") or bare == "rep_template" or bare.startswith("rep_template."):
            report.skipped[key] = "pretraining decoder / template (not part of the encoder)"
            continue
        state[bare] = tensor

    weight_key, bias_key = "patch_embed1.proj.weight", "patch_embed1.proj.bias"
    if weight_key in state:
        ckpt_in, model_in = state[weight_key].shape[1], model.in_chans
        if ckpt_in != model_in:
            if rule == "error":
                raise CheckpointError(
                    f"checkpoint has {ckpt_in} input channel(s), the model {model_in} "
                    f"(in_channels_rule='error')", path)
            if rule == "skip":
                for key in (weight_key, bias_key):
                    if key in state:
                        state.pop(key)
                        report.skipped[key] = f"input channels differ ({ckpt_in} vs {model_in}); rule 'skip'"
                report.notes.append(
                    f"patch_embed1.proj kept its initial values (checkpoint has {ckpt_in} input "
                    f"channel(s), model {model_in}), as the original downstream code does.")
            else:
                state[weight_key] = _adapt_input_conv(state[weight_key], model_in)
                report.notes.append(
                    f"patch_embed1.proj adapted from {ckpt_in} to {model_in} input channel(s) (rule 'repeat').")
    allowed: tuple[str, ...] = ("extra_bridge.",)
    if rule == "skip":
        allowed += (weight_key, bias_key)
    return load_checked(model, state, report, allowed_missing=allowed)


def _adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Change the input channels of a conv kernel ``(out, in, k, k, k)`` (timm's rule)."""
    ckpt_in = weight.shape[1]
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_chans / ckpt_in)
    tiled = weight.repeat(1, repeats, 1, 1, 1)[:, :in_chans]
    return tiled * (ckpt_in / in_chans)
