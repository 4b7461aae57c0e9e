"""Tiny CNNs trained on sklearn's bundled digits (8×8 images, no download) for the monitor's tests.

Each run can inject one fault (learning rate × 100, a frozen layer, heavy weight decay on an
over-parameterised net, magnitude pruning mid-run) and saves a state_dict checkpoint after every
optimiser step, so that a test can ask ``filterdb check`` on the saved files when a verdict first shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

torch = __import__("pytest").importorskip("torch")
nn = torch.nn


def digits_tensors() -> tuple[Any, Any]:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images.reshape(-1, 1, 8, 8) / 16.0, dtype=torch.float32)
    return x, torch.tensor(labels, dtype=torch.long)


class DigitsCNN(nn.Module):
    """8×8 → conv1 (16) → conv2 (32) → pool → conv3 (64) → mean → linear. conv2/conv3 can be judged."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: Any) -> Any:
        x = torch.relu(self.conv1(x))
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3)))


class Overparam(nn.Module):
    """conv4/conv5 run on 1×1 maps: only the centre tap sees data, weight decay collapses the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv4 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv5 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: Any) -> Any:
        x = nn.functional.max_pool2d(torch.relu(self.conv2(torch.relu(self.conv1(x)))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv3(x)), 4)  # 1×1
        x = torch.relu(self.conv5(torch.relu(self.conv4(x))))
        return self.fc(x.flatten(1))


@dataclass
class Run:
    """A training run: the model, its optimiser, a per-step hook (the fault), and the checkpoint folder."""

    model: Any
    optimizer: Any
    steps: int
    folder: Path
    after_step: Callable[[int, Any], None] = lambda step, model: None
    checkpoints: dict[int, Path] = field(default_factory=dict)

    def train(self, on_step: Callable[[int], bool]) -> int:
        """Train ``steps`` optimiser steps on digits (batches of 64); ``on_step(step)`` True stops early."""
        x, y = digits_tensors()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        self._save(0)
        for step in range(1, self.steps + 1):
            batch = order[(step * 64) % (len(x) - 64):][:64]
            loss = nn.functional.cross_entropy(self.model(x[batch]), y[batch])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.after_step(step, self.model)
            self._save(step)
            if on_step(step):
                return step
        return self.steps

    def _save(self, step: int) -> None:
        path = self.folder / f"step{step:04d}.pt"
        torch.save(self.model.state_dict(), path)
        self.checkpoints[step] = path


def first_verdict_step(run: Run, kind: str) -> tuple[int, str] | None:
    """The first saved step at which ``filterdb check`` on the checkpoint shows ``kind`` (and the layer)."""
    import filterdb

    for step, path in sorted(run.checkpoints.items()):
        report = filterdb.check_model(filterdb.read_model(path))
        for name, kinds in zip(report.layers["name"], report.layers["verdicts"]):
            if kind in kinds:
                return step, name
    return None


def make_run(fault: str, folder: Path, *, steps: int = 120) -> Run:
    """A seeded run with one fault: "none", "lr100", "frozen", "weight-decay", "prune"."""
    torch.manual_seed(0)
    np.random.seed(0)
    if fault == "weight-decay":
        model = Overparam()
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=2.0)
        return Run(model, optimizer, steps, folder)
    model = DigitsCNN()
    lr = 1.0 if fault == "lr100" else 0.01
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if fault == "frozen":
        model.conv3.weight.requires_grad_(False)
    run = Run(model, optimizer, steps, folder)
    if fault == "prune":
        run.after_step = _pruner(start=steps // 2)
    return run


def _pruner(start: int) -> Callable[[int, Any], None]:
    """From step ``start`` on, 75 % of conv3's filters (smallest L1 norm, chosen at ``start``) are held at zero."""
    mask: dict[str, Any] = {}

    def prune(step: int, model: Any) -> None:
        if step < start:
            return
        weight = model.conv3.weight
        with torch.no_grad():
            if "conv3" not in mask:
                norms = weight.abs().sum(dim=(2, 3)).flatten()
                cut = norms.kthvalue(int(0.75 * norms.numel())).values
                mask["conv3"] = (weight.abs().sum(dim=(2, 3), keepdim=True) > cut).float()
            weight.mul_(mask["conv3"])

    return prune
