"""What every pretraining objective shares: the optimiser loop and its loss curve."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import torch

from ..progress import SILENT, Progress


@dataclass
class PretrainCurve:
    """Loss per step of one pretraining run (what the provenance file records)."""

    objective: str
    steps: int = 0
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self, every: int = 10) -> dict[str, Any]:
        """JSON form: the loss averaged over windows of ``every`` steps."""
        windows = [sum(self.loss[i : i + every]) / len(self.loss[i : i + every]) for i in range(0, len(self.loss), every)]
        data = asdict(self)
        data["loss"] = [round(v, 6) for v in windows]
        data["loss_window"] = every
        return data


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 5 % of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def run_steps(
    objective: str,
    parameters: list[torch.nn.Parameter],
    batches: Callable[[int], Iterator[Any]],
    loss_of: Callable[[Any], torch.Tensor],
    steps: int,
    lr: float,
    weight_decay: float = 0.05,
    after_step: "Callable[[int], None] | None" = None,
    progress: Progress = SILENT,
) -> PretrainCurve:
    """AdamW with warm-up + cosine schedule for ``steps`` steps over ``batches(epoch)``."""
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    curve = PretrainCurve(objective)
    start = time.perf_counter()
    step, epoch = 0, 0
    while step < steps:
        for batch in batches(epoch):
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, steps, lr, warmup=max(1, steps // 20))
            optimizer.zero_grad(set_to_none=True)
            loss = loss_of(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            if after_step is not None:
                after_step(step)
            curve.loss.append(float(loss.detach()))
            step += 1
            progress.update(f"pretrain · {objective}", step, steps)
            if step >= steps:
                break
        epoch += 1
    curve.steps = step
    curve.seconds = time.perf_counter() - start
    return curve


def minibatches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled index batches of one epoch (drops a last batch smaller than 2)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
    out = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return [b for b in out if len(b) >= 2]
