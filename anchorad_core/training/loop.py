"""A small training loop with AdamW, validation-loss early stopping and best-weight restore."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..progress import SILENT, Progress
from .config import StageSettings


@dataclass
class TrainHistory:
    """Per-epoch losses and the epoch whose weights were kept."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf


def fit(
    modules: Sequence[nn.Module],
    train_step: Callable[[list[int]], torch.Tensor],
    validate: Callable[[], float],
    n_train: int,
    settings: StageSettings,
    seed: int,
    stage: str = "training",
    progress: Progress = SILENT,
    train_mode: Callable[[], None] | None = None,
    eval_mode: Callable[[], None] | None = None,
) -> TrainHistory:
    """Train the parameters of ``modules`` that require grad, keeping the best validation epoch.

    Parameters
    ----------
    modules
        Modules whose trainable parameters are optimised and whose state (parameters and
        buffers) is snapshotted at the best epoch.
    train_step
        Returns the mean loss of the training subjects at the given indices.
    validate
        Returns the validation loss (no grad needed).
    n_train
        Number of training subjects (indices ``0..n_train-1``).
    settings
        Epochs, batch size, learning rate, weight decay, patience.
    seed
        Seeds the shuffling.
    train_mode, eval_mode
        Put the modules into the right train/eval state (defaults: ``.train()`` / ``.eval()``).
    """
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    params = list({id(p): p for p in params}.values())
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    rng = np.random.default_rng(seed)
    history = TrainHistory()
    best_state = _snapshot(modules)
    stale = 0
    steps_per_epoch = max(1, math.ceil(n_train / settings.batch_size))
    total_steps = settings.epochs * steps_per_epoch
    for epoch in range(settings.epochs):
        (train_mode or (lambda: [m.train() for m in modules]))()
        order = rng.permutation(n_train)
        losses = []
        for step in range(steps_per_epoch):
            index = order[step * settings.batch_size : (step + 1) * settings.batch_size].tolist()
            if len(index) == 1 and n_train > 1:  # a batch of one breaks BatchNorm in train mode
                index.append(int(order[0]))
            optimizer.zero_grad(set_to_none=True)
            loss = train_step(index)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            progress.update(stage, epoch * steps_per_epoch + step + 1, total_steps)
        (eval_mode or (lambda: [m.eval() for m in modules]))()
        with torch.no_grad():
            val_loss = float(validate())
        history.train_loss.append(float(np.mean(losses)))
        history.val_loss.append(val_loss)
        if val_loss < history.best_val_loss - 1e-4:
            history.best_val_loss = val_loss
            history.best_epoch = epoch
            best_state = _snapshot(modules)
            stale = 0
        else:
            stale += 1
            if stale >= settings.patience:
                break
    progress.update(stage, total_steps, total_steps)
    _restore(modules, best_state)
    (eval_mode or (lambda: [m.eval() for m in modules]))()
    return history


def _snapshot(modules: Sequence[nn.Module]) -> list[dict[str, torch.Tensor]]:
    """Copy the trainable parameters and all floating buffers of ``modules``."""
    states = []
    for module in modules:
        state = {}
        for name, p in module.named_parameters():
            if p.requires_grad:
                state[name] = p.detach().clone()
        for name, b in module.named_buffers():
            state[name] = b.detach().clone()
        states.append(state)
    return states


def _restore(modules: Sequence[nn.Module], states: list[dict[str, torch.Tensor]]) -> None:
    for module, state in zip(modules, states):
        tensors = dict(module.named_parameters())
        tensors.update(dict(module.named_buffers()))
        with torch.no_grad():
            for name, value in state.items():
                tensors[name].copy_(value)
