"""The anchored method: Q-former, anchored rounds with LoRA, aggregation, output-level baselines."""
from .aggregation import RULES, aggregate, validation_round_weights
from .anchored_round import AnchoredRound, RoundOutput
from .lora import LoraSettings, attach_lora, base_state_dict, load_lora
from .output_fusion import FUSION_METHODS, OutputFusion
from .qformer import AuxiliaryFeatures, ModalityAwareQFormer, QFormerOutput

__all__ = [
    "RULES", "aggregate", "validation_round_weights", "AnchoredRound", "RoundOutput",
    "LoraSettings", "attach_lora", "base_state_dict", "load_lora", "FUSION_METHODS",
    "OutputFusion", "AuxiliaryFeatures", "ModalityAwareQFormer", "QFormerOutput",
]
