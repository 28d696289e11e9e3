"""Loading a published Hugging Face text model folder into the clinical-text backbone (a GGUF file: :mod:`.gguf_loading`)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...errors import CheckpointError
from ..hf_common import check_loading_info, offline_kwargs, strip_unused_heads

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def load_text_model(folder: Path, hf_config: Any, dtype: torch.dtype, trust: bool, load_weights: bool) -> "PreTrainedModel":
    """Load (or only build) the bare ``AutoModel`` of ``folder``."""
    from transformers import AutoModel

    try:
        if load_weights:
            model, info = AutoModel.from_pretrained(
                str(folder), config=hf_config, dtype=dtype, output_loading_info=True, **offline_kwargs(trust)
            )
        else:
            model = AutoModel.from_config(hf_config, trust_remote_code=trust).to(dtype)
            info = None
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"clinical-text model: cannot load: {exc}", path=folder) from exc
    if info is not None:
        check_loading_info(info, folder, [r"(^|\.)pooler\.", r"position_ids$", r"rotary_emb"], "clinical-text model")
    strip_unused_heads(model)
    model.eval()
    return model
