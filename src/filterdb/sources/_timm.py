"""``timm:NAME``: the pretrained weights of a timm model, e.g. ``timm:resnet18.a1_in1k`` (``ARCH[.TAG]``).

The model's ``pretrained_cfg`` says where timm gets them, and the file is resolved the way timm loads it, in
timm's own caches: ``file`` (a local file) first, then ``hf_hub_id`` through huggingface_hub's cache
(``hf_hub_filename``, else ``model.safetensors`` before ``pytorch_model.bin``), then ``url`` through torch
hub's checkpoint cache. So ``timm.create_model(NAME, pretrained=True)`` and filterdb share one download, and
``timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=path))`` loads the same file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import FilterDBError, ModelNotFoundError, SourceError, missing_dependency
from ._hf import hf_file
from ._registry import ResolvedSource, register_source
from ._torchvision import torch_hub_file

__all__ = ["parse_timm_spec"]

_SPEC = re.compile(r"^timm:(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)$")
_FORM = "'timm:NAME' with NAME an architecture and optional tag (for example timm:resnet18.a1_in1k)"
_HF_FILES = ("model.safetensors", "pytorch_model.bin")  # timm tries the safetensors twin first


def parse_timm_spec(spec: str) -> str:
    """The model name of ``timm:NAME``."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise SourceError(f"{spec}: a timm source reads {_FORM}")
    return match.group("name")


def _pretrained_cfg(spec: str, name: str) -> Any:
    try:
        import timm.models
    except ImportError as e:
        raise missing_dependency("timm", "reading timm: sources", "timm") from e
    except RuntimeError as e:  # timm imports torchvision, which fails when built for another torch
        raise SourceError(f"{spec}: timm is installed but does not load ({e}); install the torchvision "
                          "release that matches the installed torch") from e
    cause: RuntimeError | None = None
    try:  # raises RuntimeError for an unknown architecture or tag
        cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    except RuntimeError as e:
        cfg, cause = None, e
    if cfg is None:
        arch = name.split(".", 1)[0]
        raise ModelNotFoundError(f"{spec}: timm has no pretrained weights named {name!r}; "
                                 f"list them with timm.list_pretrained('{arch}*')") from cause
    return cfg


def _from_hf(spec: str, cfg: Any) -> Path:
    repo_id, _, revision = cfg.hf_hub_id.partition("@")
    candidates = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HF_FILES
    failures: list[FilterDBError] = []
    for filename in candidates:  # offline, a cached pytorch_model.bin serves when model.safetensors is absent
        try:
            return hf_file(spec, repo_id, filename, revision or None)
        except (SourceError, ModelNotFoundError) as e:
            failures.append(e)
    raise failures[0]


def resolve_timm(spec: str) -> ResolvedSource:
    """Resolve ``timm:NAME`` to the pretrained weights file timm would load."""
    name = parse_timm_spec(spec)
    cfg = _pretrained_cfg(spec, name)
    if cfg.file:
        path = Path(cfg.file).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"{spec}: timm's pretrained_cfg names the file {path}, which does not exist")
        return ResolvedSource(spec=spec, path=path, scheme="timm")
    failures: list[str] = []
    if cfg.hf_hub_id:
        try:
            return ResolvedSource(spec=spec, path=_from_hf(spec, cfg), scheme="timm")
        except (SourceError, ModelNotFoundError) as e:
            if not cfg.url:
                raise
            failures.append(str(e).removeprefix(f"{spec}: "))
    if cfg.url:
        try:  # timm checks no hash by default (timm.models.set_pretrained_check_hash)
            return ResolvedSource(spec=spec, path=torch_hub_file(spec, cfg.url, check_hash=False), scheme="timm")
        except SourceError as e:
            failures.append(str(e).removeprefix(f"{spec}: "))
            raise SourceError(f"{spec}: no source of its weights could be had: {'; '.join(failures)}") from e
    raise ModelNotFoundError(f"{spec}: timm's pretrained_cfg of {name} names no file, hf_hub_id or url")


register_source("timm", resolve_timm)
