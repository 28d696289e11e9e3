"""A small training loop: AdamW, validation-loss early stopping, best-weight restore,
crash-safe epoch checkpoints and data-parallel gradient averaging under ``accelerate``."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..progress import SILENT, Progress
from .config import StageSettings
from .run_state import load_checkpoint, save_checkpoint

if TYPE_CHECKING:  # accelerate ships no type information: the name documents what is passed
    from accelerate import Accelerator


@dataclass
class TrainHistory:
    """Per-epoch losses and the epoch whose weights were kept."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    #: Validation loss of the starting weights (``keep_initial``); best_epoch -1 means they were kept.
    initial_val_loss: float = math.nan
    #: What the phase-1 linear probe chose (``C``, ``blocks`` read, validation and inner-CV
    #: log-loss); ``None`` for stages without one.
    probe: "dict[str, Any] | None" = None

    def to_dict(self) -> dict[str, Any]:
        """Plain form (stored in checkpoints)."""
        return asdict(self)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled subject order of one epoch (a pure function of seed and epoch, so that a
    resumed run sees exactly the batches an uninterrupted run would)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


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
    checkpoint: "Path | None" = None,
    accelerator: "Accelerator | None" = None,
    keep_initial: bool = False,
    lr_multipliers: "dict[int, float] | None" = None,
) -> TrainHistory:
    """Train the parameters of ``modules`` that require grad, keeping the best validation epoch.

    Parameters
    ----------
    modules
        Modules whose trainable parameters are optimised and whose state (trainable
        parameters and buffers) is snapshotted at the best epoch.
    train_step
        Returns the mean loss of the training subjects at the given indices.
    validate
        Returns the validation loss (run under ``no_grad``); NaN when there is no validation
        split, in which case every epoch counts as the best (the last one is kept).
    n_train
        Number of training subjects (indices ``0..n_train-1``).
    settings
        Epochs, batch size, learning rate, weight decay, patience.
    seed
        Seeds shuffling and per-step randomness (dropout).
    train_mode, eval_mode
        Put the modules into the right train/eval state (defaults: ``.train()`` / ``.eval()``).
    checkpoint
        File for a crash-safe epoch checkpoint; an existing one is resumed from.
    accelerator
        An ``accelerate.Accelerator`` for data-parallel training: each process takes its
        share of every batch and gradients are summed across processes, which reproduces
        the single-process full-batch gradient (BatchNorm statistics aside).
    lr_multipliers
        ``id(parameter) -> factor`` of the learning rate (e.g. the injection gates, which must
        open within a few dozen steps; no weight decay on them).
    keep_initial
        Validate the starting weights first and keep them unless an epoch beats them
        (fine-tuning from a fitted probe, or a zero-gated anchored round, never ends worse
        on validation than where it started). Recorded as ``initial_val_loss``.
    """
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    params = list({id(p): p for p in params}.values())
    multipliers = lr_multipliers or {}
    plain = [p for p in params if id(p) not in multipliers]
    groups: list[dict[str, Any]] = [{"params": plain}] if plain else []
    for factor in sorted(set(multipliers.values())):
        chosen = [p for p in params if multipliers.get(id(p)) == factor]
        if chosen:
            groups.append({"params": chosen, "lr": settings.lr * factor, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    base_lrs = [group["lr"] for group in optimizer.param_groups]  # before a resumed state overwrites them
    to_train = train_mode or (lambda: [m.train() for m in modules])
    to_eval = eval_mode or (lambda: [m.eval() for m in modules])
    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1

    history, best_state, stale, start_epoch = TrainHistory(), _snapshot(modules), 0, 0
    if checkpoint is not None and Path(checkpoint).is_file():
        saved = load_checkpoint(Path(checkpoint))
        _restore(modules, saved["current"])
        optimizer.load_state_dict(saved["optimizer"])
        best_state, stale, start_epoch = saved["best"], saved["stale"], saved["epoch"] + 1
        history = TrainHistory(**saved["history"])

    if keep_initial and start_epoch == 0 and not history.val_loss:
        to_eval()
        with torch.no_grad():
            history.initial_val_loss = float(validate())
        history.best_val_loss = history.initial_val_loss
    steps_per_epoch = max(1, math.ceil(n_train / settings.batch_size))
    total_steps = settings.epochs * steps_per_epoch
    warmup_steps = settings.warmup_epochs * steps_per_epoch
    stopped = stale >= settings.patience
    for epoch in range(start_epoch, settings.epochs):
        if stopped:
            break
        to_train()
        order = epoch_order(n_train, seed, epoch)
        losses = []
        for step in range(steps_per_epoch):
            index = order[step * settings.batch_size : (step + 1) * settings.batch_size].tolist()
            if len(index) == 1 and n_train > 1:  # a batch of one breaks BatchNorm in train mode
                index.append(int(order[0]))
            torch.manual_seed(hash((seed, epoch, step)) % (2**31))
            if warmup_steps > 0:  # a pure function of the step, so a resumed run warms up alike
                factor = min(1.0, (epoch * steps_per_epoch + step + 1) / warmup_steps)
                for group, base in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = base * factor
            optimizer.zero_grad(set_to_none=True)
            shard = index[rank::world]
            loss_value = torch.zeros(())
            if shard:
                loss = train_step(shard) * (len(shard) / len(index))
                loss.backward()
                loss_value = loss.detach().float().cpu()
            if accelerator is not None:
                for p in params:
                    grad = p.grad if p.grad is not None else torch.zeros_like(p)
                    p.grad = accelerator.reduce(grad, reduction="sum")
                loss_value = accelerator.reduce(loss_value.to(accelerator.device), reduction="sum").cpu()
            optimizer.step()
            losses.append(float(loss_value))
            progress.update(stage, epoch * steps_per_epoch + step + 1, total_steps)
        to_eval()
        with torch.no_grad():
            val_loss = float(validate())
        history.train_loss.append(float(np.mean(losses)))
        history.val_loss.append(val_loss)
        if math.isnan(val_loss) or val_loss < history.best_val_loss - 1e-4:  # NaN: no validation split
            history.best_val_loss, history.best_epoch = val_loss, epoch
            best_state, stale = _snapshot(modules), 0
        else:
            stale += 1
            stopped = stale >= settings.patience
        if checkpoint is not None and rank == 0:
            save_checkpoint(Path(checkpoint), {
                "epoch": epoch, "current": _snapshot(modules), "optimizer": optimizer.state_dict(),
                "best": best_state, "stale": stale, "history": history.to_dict(),
            })
        if accelerator is not None:
            accelerator.wait_for_everyone()
    progress.update(stage, total_steps, total_steps)
    _restore(modules, best_state)
    to_eval()
    return history


def _snapshot(modules: Sequence[nn.Module]) -> list[dict[str, torch.Tensor]]:
    """Copy the trainable parameters and all buffers of ``modules``."""
    states = []
    for module in modules:
        state = {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}
        state.update({name: b.detach().clone() for name, b in module.named_buffers()})
        states.append(state)
    return states


def _restore(modules: Sequence[nn.Module], states: list[dict[str, torch.Tensor]]) -> None:
    for module, state in zip(modules, states):
        tensors: dict[str, torch.Tensor] = dict(module.named_parameters())
        tensors.update(dict(module.named_buffers()))
        with torch.no_grad():
            for name, value in state.items():
                tensors[name].copy_(value)
