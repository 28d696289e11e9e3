"""Masked language modelling on non-overlapping 6-mer tokens (the Nucleotide Transformer objective).

15 % of the DNA tokens of each window are chosen; 80 % of those become the mask token,
10 % a random 6-mer, 10 % stay; ESM's masked-LM head predicts the original token. Random
crops of each sequence (a random start base, so every reading frame of the 6-mer
tokenisation appears) keep the model from learning one fixed token layout.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.nucleotide_transformer import NucleotideTransformerBackbone
from ..progress import SILENT, Progress
from .common import PretrainCurve, minibatches, run_steps


def pretrain_masked_dna(
    encoder: NucleotideTransformerBackbone,
    sequences: Sequence[str],
    steps: int = 400,
    batch_size: int = 16,
    lr: float = 1e-3,
    mask_fraction: float = 0.15,
    min_crop: int = 240,
    seed: int = 0,
    progress: Progress = SILENT,
) -> PretrainCurve:
    """Pretrain the ESM encoder of ``encoder`` in place on DNA strings; returns the loss curve."""
    from transformers import EsmConfig
    from transformers.models.esm.modeling_esm import EsmLMHead

    torch.manual_seed(seed)
    esm = encoder.model
    esm_config = getattr(esm, "config", None)
    if not isinstance(esm_config, EsmConfig) or esm_config.vocab_size is None:
        raise TypeError(f"masked-DNA pretraining needs an ESM model, got {type(esm).__name__}")
    head = EsmLMHead(esm_config)
    tokenizer = encoder.tokenizer
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    mask_id, vocab = int(tokenizer.mask_token_id), int(esm_config.vocab_size)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    esm.train()

    def crop(sequence: str) -> str:
        length = int(rng.integers(min(min_crop, len(sequence)), len(sequence) + 1))
        start = int(rng.integers(0, len(sequence) - length + 1))
        return sequence[start : start + length]

    def batches(epoch: int):
        for index in minibatches(len(sequences), batch_size, seed, epoch):
            batch = encoder.collate([[crop(sequences[i])] for i in index])
            rows = batch["chunk_mask"].reshape(-1)
            yield batch["input_ids"].reshape(-1, batch["input_ids"].shape[-1])[rows], \
                batch["attention_mask"].reshape(-1, batch["attention_mask"].shape[-1])[rows]

    def loss_of(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, attention = batch
        candidates = attention.bool() & ~torch.isin(ids, special)
        chosen = candidates & (torch.rand(ids.shape, generator=generator) < mask_fraction)
        draw = torch.rand(ids.shape, generator=generator)
        corrupted = ids.clone()
        corrupted[chosen & (draw < 0.8)] = mask_id
        random_tokens = torch.randint(len(special), vocab, ids.shape, generator=generator)
        swap = chosen & (draw >= 0.8) & (draw < 0.9)
        corrupted[swap] = random_tokens[swap]
        hidden = esm(input_ids=corrupted, attention_mask=attention).last_hidden_state
        logits = head(hidden[chosen])
        return F.cross_entropy(logits, ids[chosen])

    params = list(esm.parameters()) + list(head.parameters())
    curve = run_steps("masked 6-mer language modelling", params, batches, loss_of, steps, lr, progress=progress)
    esm.eval()
    return curve
