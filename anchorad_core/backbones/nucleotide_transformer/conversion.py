"""Loading a published Nucleotide Transformer folder (Hugging Face ESM, v1 layout; v2 with remote code) into the DNA backbone."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from ...errors import CheckpointError
from ..hf_common import check_loading_info, offline_kwargs, strip_unused_heads

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def load_esm_encoder(
    folder: Path, hf_config: Any, dtype: torch.dtype, remote: bool, load_weights: bool
) -> "PreTrainedModel":
    """Load (or only build) the ESM encoder of a Nucleotide Transformer folder."""
    try:
        if remote:
            from transformers import AutoModelForMaskedLM

            if load_weights:
                full = AutoModelForMaskedLM.from_pretrained(str(folder), config=hf_config, dtype=dtype, **offline_kwargs(True))
            else:
                full = AutoModelForMaskedLM.from_config(hf_config, trust_remote_code=True).to(dtype)
            # transformers types ``base_model`` as a plain Module; it is the masked-LM's
            # encoder (``.esm``), itself a PreTrainedModel
            model = cast("PreTrainedModel", full.base_model)
        else:
            from transformers import EsmModel

            if load_weights:
                from transformers.utils import logging as hf_logging

                # our own check below judges what is missing; transformers' load report would
                # print a table on stderr for the (deliberately absent) contact head
                verbosity = hf_logging.get_verbosity()
                hf_logging.set_verbosity_error()
                try:
                    # with output_loading_info=True, from_pretrained returns (model, info);
                    # transformers' annotation names only the model
                    model, info = cast("tuple[EsmModel, dict[str, Any]]", EsmModel.from_pretrained(
                        str(folder),
                        config=hf_config,
                        dtype=dtype,
                        add_pooling_layer=False,
                        output_loading_info=True,
                        **offline_kwargs(False),
                    ))
                finally:
                    hf_logging.set_verbosity(verbosity)
                check_loading_info(
                    info, folder, [r"(^|\.)pooler\.", r"contact_head\.", r"position_ids$", r"inv_freq$"], "Nucleotide Transformer"
                )
            else:
                # transformers decorates ``to`` with functools.wraps(nn.Module.to), so typeshed
                # types the bound call as the unbound one (first argument ``self``)
                model = EsmModel(hf_config, add_pooling_layer=False).to(dtype)  # type: ignore[arg-type]
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"Nucleotide Transformer: cannot load: {exc}", path=folder) from exc
    strip_unused_heads(model)
    model.eval()
    return model
