"""``torchvision:NAME[/WEIGHTS]``: the pretrained weights of a torchvision model, e.g. ``torchvision:resnet18``.

WEIGHTS is a member of the model's weights enum (``IMAGENET1K_V1``, ...), ``DEFAULT`` when left out. The
file is the one torchvision itself loads: ``torch.hub.get_dir()/checkpoints/<basename of the weights url>``
(``TORCH_HOME`` moves it), downloaded there with ``torch.hub.download_url_to_file`` when absent and checked
against the hash prefix in its name, as torchvision's builders do (``check_hash=True``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import ModelNotFoundError, SourceError, missing_dependency
from ._registry import ResolvedSource, register_source

__all__ = ["parse_torchvision_spec", "torch_hub_file"]

_SPEC = re.compile(r"^torchvision:(?P<name>[A-Za-z][A-Za-z0-9_]*)(?:/(?P<weights>[A-Za-z][A-Za-z0-9_.]*))?$")
_FORM = "'torchvision:NAME[/WEIGHTS]' (for example torchvision:resnet18 or torchvision:resnet50/IMAGENET1K_V2)"


def parse_torchvision_spec(spec: str) -> tuple[str, str]:
    """Split ``torchvision:NAME[/WEIGHTS]`` into (model name, weights name; "DEFAULT" when left out)."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise SourceError(f"{spec}: a torchvision source reads {_FORM}")
    weights = match.group("weights") or "DEFAULT"
    return match.group("name"), weights.rsplit(".", 1)[-1]  # "ResNet18_Weights.IMAGENET1K_V1" -> member


def torch_hub_file(spec: str, url: str, *, check_hash: bool) -> Path:
    """The file of ``url`` in torch hub's checkpoint cache, downloaded there first if absent.

    ``check_hash`` verifies a download against the sha256 prefix in the file name (``name-<hex>.pth``),
    as ``torch.hub.load_state_dict_from_url(check_hash=True)`` does.
    """
    try:
        import torch.hub
    except ImportError as e:
        raise missing_dependency("torch", f"{spec.split(':', 1)[0]}: sources", "torch") from e
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if target.is_file():
        return target
    hash_prefix = None
    if check_hash:
        found = torch.hub.HASH_REGEX.search(target.name)
        hash_prefix = found.group(1) if found else None
    target.parent.mkdir(parents=True, exist_ok=True)
    try:  # writes a temporary file and renames it: a concurrent reader never sees half a file
        torch.hub.download_url_to_file(url, str(target), hash_prefix, progress=False)
    except Exception as e:  # noqa: BLE001  urllib, socket and hash errors alike: the file could not be had
        raise SourceError(
            f"{spec}: {target.name} is not in torch hub's cache ({target.parent}) and downloading {url} failed "
            f"({type(e).__name__}: {e}); connect once, or put the file there (TORCH_HOME moves the cache)"
        ) from e
    return target


def _weights(spec: str, name: str, member: str) -> Any:
    try:
        import torchvision.models
    except ImportError as e:
        raise missing_dependency("torchvision", "reading torchvision: sources", "torchvision") from e
    except RuntimeError as e:  # e.g. "operator torchvision::nms does not exist": built for another torch
        raise SourceError(f"{spec}: torchvision is installed but does not load ({e}); install the torchvision "
                          "release that matches the installed torch") from e
    try:
        enum = torchvision.models.get_model_weights(name)
    except ValueError as e:
        raise ModelNotFoundError(
            f"{spec}: torchvision has no model {name!r}; see torchvision.models.list_models()") from e
    try:
        return enum[member]
    except KeyError as e:
        known = ", ".join(m for m in enum.__members__)
        raise ModelNotFoundError(f"{spec}: {name} has no weights {member!r}; known: {known}") from e


def resolve_torchvision(spec: str) -> ResolvedSource:
    """Resolve ``torchvision:NAME[/WEIGHTS]`` to the weights file in torch hub's cache."""
    name, member = parse_torchvision_spec(spec)
    weights = _weights(spec, name, member)
    return ResolvedSource(spec=spec, path=torch_hub_file(spec, weights.url, check_hash=True), scheme="torchvision")


register_source("torchvision", resolve_torchvision)
