"""Self-supervised pretraining of the demo foundation models (no label is ever read).

Each backbone family is pretrained with its own published objective on an unlabeled
pretraining cohort generated apart from every evaluation cohort:

- :mod:`.masked_volume` — BrainMVP-style masked-volume reconstruction for the 3-D UniFormer;
- :mod:`.jepa` — the Brain-JEPA objective (EMA target encoder, predictor, gradient
  positional embedding) for the ROI x time ViT;
- :mod:`.masked_dna` — masked language modelling on non-overlapping 6-mer tokens for the
  Nucleotide Transformer.

:func:`pretrain_demo_backbones` runs all three and writes the shipped weights with their
provenance (``anchorad pretrain``).
"""
from .run import PretrainSettings, pretrain_demo_backbones

__all__ = ["PretrainSettings", "pretrain_demo_backbones"]
