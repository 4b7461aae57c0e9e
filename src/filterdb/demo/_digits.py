"""The demo's digits family: tiny CNNs trained on sklearn's digits, each degeneration with a known cause.

Every model of the family is trained (or deliberately not trained) so that one verdict of
:func:`filterdb.check.check_model` appears on known layers, for a known reason, and nowhere else:

- **healthy** (``digits-cnn-w2``, ``digits-cnn-w4``, ``digits-vgg``): trained normally; no verdict.
- **random** (``*-untrained``): the same networks with the very same initial weights, never trained. Every
  layer with enough filters to be judged (``Thresholds.min_filters``) reads "random".
- **sparse** (``digits-cnn-w2-pruned``): ``digits-cnn-w2`` magnitude-pruned: 75 % of the 3×3 filters of
  ``conv2`` and ``conv3`` (the smallest by L1 norm) set to zero, then fine-tuned with the mask held.
- **low-diversity** (``digits-overparam``): an over-parameterised net whose last two 3×3 layers
  (``conv4``, ``conv5``, 64 × 64 = 4,096 filters each) run on 1×1 feature maps, so that only the centre tap of
  their filters ever sees data; decoupled weight decay (AdamW) shrinks the eight unused taps towards
  zero and every filter collapses onto the same "centre dot" pattern.

The stems (``conv1``) have 16 filters, below ``Thresholds.min_filters``: no entropy verdict is expected
there. Training is deterministic (fixed seeds, one thread) and takes seconds. The files are the models'
``state_dict`` s as safetensors (float16); the healthy ``digits-cnn-w2`` is also written as ONNX
(:mod:`._digits_files`, no torch exporter). The package ships them (``filterdb/demo/digits/``, made by
``scripts/make_digits_family.py``), so that the demo needs no framework; training is only needed to remake
them (``filterdb demo --train``).

torch is imported lazily: importing this module needs no torch; training does.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write_text
from ..errors import MissingDependencyError, missing_dependency
from ._digits_files import save_cnn_onnx, save_weights

__all__ = [
    "DIGITS_MODELS",
    "DIGITS_VERSION",
    "INDEX_NAME",
    "MIN_ACCURACY",
    "DigitsModel",
    "DigitsResult",
    "digits_rows",
    "train_digits_family",
]

DIGITS_VERSION = "2"  # the recipe's version: cached files of another version are rebuilt
INDEX_NAME = "digits.json"  # next to the model files: version, torch release, threads, CPU kind, manifest rows
WEIGHT_DTYPE = "float16"  # the files hold float16 weights (trained in float32): half the size, same verdicts
MIN_ACCURACY = 0.85  # documented floor of the trained models' test accuracy (they reach ~0.95)

_SEED = 0
_N_TEST = 450  # held-out images of the 1,797 (a seeded permutation); the rest train
_BATCH = 64


@dataclass(frozen=True)
class DigitsModel:
    """One model of the family and what :func:`filterdb.check.check_model` must say about it."""

    name: str  # manifest Name, also the file stem
    architecture: str  # "cnn" | "vgg" | "overparam"
    width: int  # channel multiplier of the architecture
    recipe: str  # "trained" | "untrained" | "pruned" | "overparam"
    verdict: str | None  # the one verdict kind expected (None: a healthy model, no verdict at all)
    layers: tuple[str, ...]  # the layers that must carry it; every other layer carries none
    cause: str  # the known cause, one sentence (manifest column "Degeneration Cause")
    parent: str | None = None  # the model it derives from: initial weights (untrained), trained weights (pruned)

    @property
    def parent_name(self) -> str:
        """``parent``, for the recipes that derive from another model (untrained, pruned)."""
        if self.parent is None:
            raise ValueError(f"{self.name}: a {self.recipe} model needs the name of the model it derives from")
        return self.parent


_UNTRAINED = "untrained (random init): the initial weights of {twin}, never trained"
_HEALTHY = "none (trained normally)"

DIGITS_MODELS: tuple[DigitsModel, ...] = (
    DigitsModel("digits-cnn-w2", "cnn", 2, "trained", None, (), _HEALTHY),
    DigitsModel("digits-cnn-w2-untrained", "cnn", 2, "untrained", "random", ("conv2", "conv3"),
                _UNTRAINED.format(twin="digits-cnn-w2"), "digits-cnn-w2"),
    DigitsModel("digits-cnn-w4", "cnn", 4, "trained", None, (), _HEALTHY),
    DigitsModel("digits-cnn-w4-untrained", "cnn", 4, "untrained", "random", ("conv2", "conv3"),
                _UNTRAINED.format(twin="digits-cnn-w4"), "digits-cnn-w4"),
    DigitsModel("digits-vgg", "vgg", 2, "trained", None, (), _HEALTHY),
    DigitsModel("digits-vgg-untrained", "vgg", 2, "untrained", "random", ("conv2", "conv3", "conv4"),
                _UNTRAINED.format(twin="digits-vgg"), "digits-vgg"),
    DigitsModel("digits-cnn-w2-pruned", "cnn", 2, "pruned", "sparse", ("conv2", "conv3"),
                "magnitude-pruned: the 75% of the 3x3 filters of conv2 and conv3 of digits-cnn-w2 with the smallest "
                "L1 norm set to zero, then fine-tuned with the mask held", "digits-cnn-w2"),
    DigitsModel("digits-overparam", "overparam", 2, "overparam", "low-diversity", ("conv4", "conv5"),
                "over-parameterised: conv4 and conv5 are 3x3 convolutions of 1x1 feature maps, so only the centre "
                "tap of each filter ever sees data; weight decay (AdamW) shrinks the 8 unused taps and all "
                "filters collapse onto one centre-dot pattern"),
)
"""The family, in training order (a twin and the pruned model come after the model they derive from)."""

PRUNE_SHARE = 0.75  # share of the filters of each pruned layer that are set to zero
_EPOCHS = 8  # epochs of every trained model (about 170 Adam steps)
_FINE_TUNE_EPOCHS = 3  # epochs after pruning
_WEIGHT_DECAY = 0.3  # AdamW's decoupled weight decay of the over-parameterised net


@dataclass(frozen=True)
class DigitsResult:
    """One trained (or untrained) model of the family, as written to disk."""

    model: DigitsModel
    files: tuple[str, ...]  # file names in the output folder: NAME.safetensors, and NAME.onnx for the ONNX copy
    accuracy: float  # test accuracy on the 450 held-out digits
    seconds: float  # wall-clock training time (0 for an untrained twin)


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise missing_dependency("torch", "training the demo's digits models", "torch") from e
    return torch


@contextmanager
def _training_mode(torch: Any, threads: int | None) -> Iterator[None]:
    """A fixed number of threads (restored afterwards) and denormals flushed to zero.

    Flushing matters for speed: the unused taps of the over-parameterised net and Adam's moment estimates
    reach the float32 subnormal range, where x86 arithmetic is about 5x slower. torch offers no getter for
    the flag, so it is switched back off afterwards (its default).
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    flushed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushed:
            torch.set_flush_denormal(False)
        torch.set_num_threads(before)


def _build(torch: Any, architecture: str, width: int) -> Any:
    """The network, with named conv layers (conv1, conv2, ...) so that reports read well."""
    nn: Any = torch.nn  # torch arrives as an argument (imported lazily): its classes are untyped here
    relu = nn.functional.relu
    pool = nn.functional.max_pool2d

    class DigitsCNN(nn.Module):
        # 8×8 → conv1, conv2 → pool → 4×4 → conv3 → global average → linear
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)  # a fixed stem of 16 filters: too few to be judged
            self.conv2 = nn.Conv2d(16, 16 * width, 3, padding=1)
            self.conv3 = nn.Conv2d(16 * width, 32 * width, 3, padding=1)
            self.fc = nn.Linear(32 * width, 10)

        def forward(self, x: Any) -> Any:
            x = pool(relu(self.conv2(relu(self.conv1(x)))), 2)
            x = relu(self.conv3(x))
            return self.fc(x.mean(dim=(2, 3)))

    class DigitsVGG(nn.Module):
        # two VGG blocks of two convs: 8×8 → 4×4 → 2×2 → global average → linear
        def __init__(self) -> None:
            super().__init__()
            c = 8 * width
            self.conv1 = nn.Conv2d(1, c, 3, padding=1)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1)
            self.conv3 = nn.Conv2d(c, 2 * c, 3, padding=1)
            self.conv4 = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
            self.fc = nn.Linear(2 * c, 10)

        def forward(self, x: Any) -> Any:
            x = pool(relu(self.conv2(relu(self.conv1(x)))), 2)
            x = pool(relu(self.conv4(relu(self.conv3(x)))), 2)
            return self.fc(x.mean(dim=(2, 3)))

    class DigitsOverparam(nn.Module):
        # the trunk of DigitsCNN, then a global max pool to 1×1 and two more 3×3 convs (padding 1) on that 1×1
        # map: their eight outer taps only ever multiply the zero padding. Leaky ReLU keeps every channel
        # alive, so that every filter's centre tap is trained.
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, 16 * width, 3, padding=1)
            self.conv3 = nn.Conv2d(16 * width, 32 * width, 3, padding=1)
            self.conv4 = nn.Conv2d(32 * width, 32 * width, 3, padding=1)
            self.conv5 = nn.Conv2d(32 * width, 32 * width, 3, padding=1)
            self.fc = nn.Linear(32 * width, 10)

        def forward(self, x: Any) -> Any:
            act = nn.functional.leaky_relu
            x = pool(act(self.conv2(act(self.conv1(x), 0.1)), 0.1), 2)
            x = pool(act(self.conv3(x), 0.1), 4)  # global max pool: 4×4 → 1×1
            x = act(self.conv5(act(self.conv4(x), 0.1)), 0.1)
            return self.fc(x.flatten(1))

    classes = {"cnn": DigitsCNN, "vgg": DigitsVGG, "overparam": DigitsOverparam}
    return classes[architecture]()


def _data(torch: Any) -> tuple[Any, Any, Any, Any]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise MissingDependencyError("training the demo's digits models needs the 'scikit-learn' package (its "
                                     "digits data set): pip install scikit-learn") from e
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(labels, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(_SEED))
    test, train = order[:_N_TEST], order[_N_TEST:]
    return x[train], y[train], x[test], y[test]


def _fit(torch: Any, model: Any, x: Any, y: Any, *, epochs: int, seed: int, lr: float = 0.01,
         weight_decay: float = 0.0, masks: Mapping[str, Any] | None = None) -> None:
    """Adam (AdamW with weight decay) on mini-batches; ``masks`` (parameter → 0/1) are re-applied every step."""
    params = dict(model.named_parameters())
    if weight_decay:
        optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), _BATCH):
            batch = order[i: i + _BATCH]
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
            if masks:
                with torch.no_grad():
                    for name, mask in masks.items():
                        params[name].mul_(mask)
    model.eval()


def _accuracy(torch: Any, model: Any, x: Any, y: Any) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _prune_masks(torch: Any, model: Any, layers: tuple[str, ...], share: float) -> dict[str, Any]:
    """0/1 masks that zero the ``share`` of each layer's 3×3 filters with the smallest L1 norm."""
    masks = {}
    for layer in layers:
        weight = getattr(model, layer).weight.detach()
        norms = weight.abs().sum(dim=(2, 3)).flatten()
        keep = torch.ones_like(norms)
        keep[torch.argsort(norms)[: round(share * norms.numel())]] = 0.0
        masks[f"{layer}.weight"] = keep.reshape(tuple(weight.shape[:2]) + (1, 1))
    return masks


def _shipped_state(torch: Any, model: Any) -> dict[str, np.ndarray]:
    """The model's weights as they are shipped (float16), loaded back into the model so that what is measured
    afterwards (test accuracy, the pruned child) is what the files hold."""
    state = {k: v.detach().numpy().astype(WEIGHT_DTYPE) for k, v in model.state_dict().items()}
    model.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in state.items()})
    return state


def train_digits_family(out_dir: str | os.PathLike[str], *, threads: int | None = 1,
                        progress: Callable[[str], None] | None = None) -> list[DigitsResult]:
    """Train the family of :data:`DIGITS_MODELS` and write their files and :data:`INDEX_NAME` into out_dir.

    Each model is saved as ``NAME.safetensors`` (its ``state_dict`` in float16); the healthy ``digits-cnn-w2``
    also as ``digits-cnn-w2.onnx``. ``digits.json`` records the recipe version, the torch release and thread
    count that trained them, and the manifest rows. This is what ``scripts/make_digits_family.py`` runs to
    make the files shipped in the package (``threads=1``): the same torch release on the same kind of CPU
    gives the same bytes.

    Parameters
    ----------
    out_dir : path
        Folder for the files; created if missing. Files are written under a temporary name and renamed.
    threads : int or None, default 1
        torch threads while training (restored afterwards); None keeps the caller's setting. The results
        are deterministic for a given number of threads (the shipped files: 1).
    progress : callable, optional
        Called with one status line per model.

    Returns
    -------
    list of DigitsResult
        One per model of :data:`DIGITS_MODELS`, in that order.

    Examples
    --------
    >>> results = train_digits_family("/tmp/digits")  # doctest: +SKIP
    >>> {r.model.name: round(r.accuracy, 2) for r in results}["digits-cnn-w2"]  # doctest: +SKIP
    0.95
    """
    torch = _torch()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda line: None)
    results: list[DigitsResult] = []
    with _training_mode(torch, threads):
        x, y, x_test, y_test = _data(torch)
        initial: dict[str, dict[str, Any]] = {}  # model name → its initial weights, for the untrained twin
        trained: dict[str, Any] = {}
        for index, spec in enumerate(DIGITS_MODELS):
            start, cpu = time.perf_counter(), time.process_time()
            seed = _SEED + 1 + index
            if spec.recipe == "untrained":
                model = _build(torch, spec.architecture, spec.width)
                model.load_state_dict(initial[spec.parent_name])
                model.eval()
            elif spec.recipe == "pruned":
                model = _build(torch, spec.architecture, spec.width)
                model.load_state_dict(trained[spec.parent_name].state_dict())
                masks = _prune_masks(torch, model, spec.layers, PRUNE_SHARE)
                with torch.no_grad():
                    params = dict(model.named_parameters())
                    for name, mask in masks.items():
                        params[name].mul_(mask)
                _fit(torch, model, x, y, epochs=_FINE_TUNE_EPOCHS, seed=seed, lr=0.003, masks=masks)
            else:
                torch.manual_seed(seed)
                model = _build(torch, spec.architecture, spec.width)
                initial[spec.name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
                decay = _WEIGHT_DECAY if spec.recipe == "overparam" else 0.0
                _fit(torch, model, x, y, epochs=_EPOCHS, seed=seed, weight_decay=decay)
                trained[spec.name] = model
            seconds = time.perf_counter() - start if spec.recipe != "untrained" else 0.0
            state = _shipped_state(torch, model)
            accuracy = _accuracy(torch, model, x_test, y_test)
            files = [f"{spec.name}.safetensors"]
            save_weights(out / files[0], state)
            if spec.name == _ONNX_MODEL:
                files.append(f"{spec.name}.onnx")
                save_cnn_onnx(out / files[1], state)
            results.append(DigitsResult(spec, tuple(files), accuracy, seconds))
            say(f"digits: {spec.name} ({spec.recipe}): test accuracy {accuracy:.1%}, {seconds:.1f} s "
                f"({time.process_time() - cpu:.1f} s CPU)")
    family = {"version": DIGITS_VERSION, "torch": str(torch.__version__), "threads": threads,
              "cpu": str(torch.backends.cpu.get_cpu_capability()), "rows": digits_rows(results)}
    atomic_write_text(out / INDEX_NAME, json.dumps(family, indent=1) + "\n")
    return results


_ONNX_MODEL = "digits-cnn-w2"  # the one model also exported to ONNX

_ARCHITECTURES = {
    "cnn": "3-conv CNN (16-{c2}-{c3} channels), global average pooling",
    "vgg": "VGG-style CNN, 2 blocks of 2 convs ({c}-{c}-{c2}-{c2} channels)",
    "overparam": "3-conv CNN (16-{c2}-{c3} channels) + two 3x3 convs on 1x1 maps ({c3}-{c3} channels)",
}


def _architecture(spec: DigitsModel) -> str:
    w = spec.width
    c = 8 * w
    return _ARCHITECTURES[spec.architecture].format(c=c, c2=16 * w if spec.architecture != "vgg" else 2 * c,
                                                    c3=32 * w)


def digits_rows(results: list[DigitsResult], folder: str = "") -> list[dict[str, str]]:
    """Manifest rows (column → value) of the family; ``file`` is ``folder/FILE`` (relative to the manifest).

    Examples
    --------
    >>> rows = digits_rows(results, "digits")  # doctest: +SKIP
    >>> rows[0]["file"], rows[0]["Task"]  # doctest: +SKIP
    ('digits/digits-cnn-w2.safetensors', 'Digit Classification')
    """
    rows = []
    for result in results:
        spec = result.model
        for file in result.files:
            onnx = file.endswith(".onnx")
            untrained = spec.recipe == "untrained"
            optimiser = {"untrained": "none", "overparam": f"AdamW (lr 0.01, weight decay {_WEIGHT_DECAY:g})",
                         "pruned": "Adam (lr 0.01), fine-tuned with Adam (lr 0.003)"}.get(spec.recipe,
                                                                                          "Adam (lr 0.01)")
            rows.append({
                "file": f"{folder}/{file}" if folder else file,
                "Name": spec.name + (" (ONNX)" if onnx else ""),
                "Task": "Digit Classification",
                "Visual Category": "handwriting",
                "Training-Dataset": "none (untrained)" if untrained else "sklearn digits",
                "Pretraining-Dataset": "",
                "Architecture": _architecture(spec),
                "Backbone": "",
                "Framework": "ONNX (written from the PyTorch weights)" if onnx else "PyTorch (safetensors)",
                "Precision": "float32 (float16 values)" if onnx else "float16 (trained in float32)",
                "Optimizer": optimiser,
                "Conv Weight Initializer": "PyTorch default (Kaiming uniform, a=sqrt(5))",
                "Paper": "",
                "URL": "",
                "License": "MIT",
                "Degeneration Cause": spec.cause,
                "Expected Verdict": spec.verdict or "none",
                "Expected Layers": ", ".join(spec.layers),
                "Test Accuracy": f"{result.accuracy:.4f}",
            })
    return rows
