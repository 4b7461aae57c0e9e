"""``hf:ORG/REPO[/FILE][@REVISION]``: a model file of a Hugging Face Hub repository.

Resolution goes through ``huggingface_hub`` and its own cache (``HF_HUB_CACHE`` / ``HF_HOME``), so a file
that ``transformers``, ``timm`` or ``hf_hub_download`` already fetched is reused, and a file fetched here is
reused by them. Without FILE the model file is picked from the repository's file list (or, when the Hub
cannot be reached or ``HF_HUB_OFFLINE=1``, from the cached snapshot) in the order of
:data:`PREFERRED_FILES`, then :data:`PREFERRED_SUFFIXES`.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from ..errors import ModelNotFoundError, SourceError, missing_dependency
from ._registry import ResolvedSource, register_source

__all__ = ["HfSpec", "parse_hf_spec", "pick_model_file", "hf_file", "PREFERRED_FILES", "PREFERRED_SUFFIXES"]

PREFERRED_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx")  # exact names, at the repo root first
PREFERRED_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".onnx", ".keras", ".h5", ".hdf5", ".tflite")
_ALLOW_PATTERNS = [f"*{suffix}" for suffix in PREFERRED_SUFFIXES]

_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_SPEC = re.compile(rf"^hf:(?P<repo>{_PART}/{_PART})(?:/(?P<file>[^@]+?))?/?(?:@(?P<rev>[^@]+))?$")
_FORM = "'hf:ORG/REPO[/FILE][@REVISION]' (for example hf:timm/resnet18.a1_in1k/model.safetensors)"
_OFFLINE_HINT = (
    "the Hub could not be reached and the file is not in the local Hugging Face cache; connect once, or "
    "pre-fill the cache (HF_HUB_CACHE) and set HF_HUB_OFFLINE=1"
)


@dataclass(frozen=True)
class HfSpec:
    """The parts of an ``hf:`` name."""

    repo_id: str  # "ORG/REPO"
    filename: str | None  # path inside the repo; None to pick the model file
    revision: str | None  # branch, tag or commit; None for the default branch


def parse_hf_spec(spec: str) -> HfSpec:
    """Split ``hf:ORG/REPO[/FILE][@REVISION]`` into its parts; SourceError naming the expected form."""
    match = _SPEC.match(spec.strip())
    if not match or ".." in PurePosixPath(match.group("file") or "").parts:
        raise SourceError(f"{spec}: a Hugging Face source reads {_FORM}")
    return HfSpec(match.group("repo"), match.group("file") or None, match.group("rev") or None)


def pick_model_file(files: Iterable[str]) -> str | None:
    """The model file to read among a repository's files, or None when it holds none we know."""
    names = sorted(set(files), key=lambda f: (f.count("/"), len(f), f))  # root files, then short paths
    for preferred in PREFERRED_FILES:
        if preferred in names:
            return preferred
    for suffix in PREFERRED_SUFFIXES:
        for name in names:
            if name.lower().endswith(suffix):
                return name
    return None


def _hub() -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.errors  # noqa: F401  (lazy submodules of the package)
        import huggingface_hub.constants  # noqa: F401
    except ImportError as e:
        raise missing_dependency("huggingface_hub", "reading hf: sources", "hf") from e
    return huggingface_hub


def _network_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "the Hub could not be reached" for whichever HTTP client huggingface_hub uses."""
    errors: list[type[BaseException]] = [OSError]  # ConnectionError, OfflineModeIsEnabled, HfHubHTTPError
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


_PROBE_TIMEOUT_S = 3.0  # one TCP connect: answers "offline" in seconds where the Hub client retries for ~25 s
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _unreachable(hub: Any) -> str | None:
    """Why the Hub cannot be reached, found within a few seconds; None when it may be reachable.

    Behind a proxy a direct connection proves nothing, so no probe is made there.
    """
    if hub.constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(var) for var in _PROXY_VARS):
        return None
    from urllib.parse import urlsplit

    endpoint = urlsplit(hub.constants.ENDPOINT)
    host = endpoint.hostname
    if not host:
        return None
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as e:
        return f"{host}:{port} is unreachable ({type(e).__name__}: {e.strerror or e})"
    return None


def _where(repo_id: str, filename: str | None, revision: str | None) -> str:
    return f"{repo_id}{'/' + filename if filename else ''}{'@' + revision if revision else ''}"


def hf_file(spec: str, repo_id: str, filename: str, revision: str | None = None) -> Path:
    """Local path of FILE in REPO (downloaded into, or found in, the Hugging Face cache).

    Raises ModelNotFoundError when the Hub says the repo, revision or file does not exist, and SourceError
    when the Hub cannot be reached and the file is not cached.
    """
    hub = _hub()
    errors = hub.errors
    where = _where(repo_id, filename, revision)
    offline = _unreachable(hub)
    try:
        return Path(hub.hf_hub_download(repo_id, filename, revision=revision, local_files_only=offline is not None))
    except errors.GatedRepoError as e:
        raise SourceError(f"{spec}: {repo_id} is a gated repository; accept its terms on the Hub and log in "
                          "(hf auth login, or HF_TOKEN)") from e
    except errors.RepositoryNotFoundError as e:
        raise ModelNotFoundError(f"{spec}: the Hub has no repository {repo_id} (or it is private: set HF_TOKEN)") from e
    except errors.RevisionNotFoundError as e:
        raise ModelNotFoundError(f"{spec}: {repo_id} has no revision {revision!r}") from e
    except errors.LocalEntryNotFoundError as e:
        why = f" ({offline})" if offline else ""
        raise SourceError(f"{spec}: cannot get {where}{why}: {_OFFLINE_HINT}") from e
    except errors.EntryNotFoundError as e:
        raise ModelNotFoundError(
            f"{spec}: {repo_id} has no file {filename!r}; name one of its files after the repo") from e
    except _network_errors() as e:
        raise SourceError(f"{spec}: cannot get {where} ({type(e).__name__}: {e}): {_OFFLINE_HINT}") from e


def _cached_files(spec: HfSpec) -> tuple[Path, list[str]] | None:
    """The cached snapshot folder of the repo at that revision and the model files in it; None if not cached."""
    hub = _hub()
    try:
        folder = hub.snapshot_download(spec.repo_id, revision=spec.revision, local_files_only=True,
                                       allow_patterns=_ALLOW_PATTERNS)
    except Exception as e:  # noqa: BLE001  any failure of a cache-only lookup means "not usable from the cache"
        folder = getattr(e, "snapshot_path", None)  # IncompleteSnapshotError: some files are still there
        if folder is None:
            return None
    root = Path(folder)
    if not root.is_dir():
        return None
    return root, [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]


def resolve_hf(spec_text: str) -> ResolvedSource:
    """Resolve ``hf:ORG/REPO[/FILE][@REVISION]`` to a file in the Hugging Face cache."""
    spec = parse_hf_spec(spec_text)
    if spec.filename is not None:
        path = hf_file(spec_text, spec.repo_id, spec.filename, spec.revision)
        return ResolvedSource(spec=spec_text, path=path, scheme="hf")

    hub = _hub()
    errors = hub.errors
    listed: list[str] | None = None
    offline = _unreachable(hub)
    reason = offline or ""
    if offline is None:
        try:
            listed = list(hub.list_repo_files(spec.repo_id, revision=spec.revision))
        except errors.GatedRepoError:
            listed = None  # a cached copy may still be there; hf_file below reports the gate
            reason = "the repository is gated"
        except errors.RepositoryNotFoundError as e:
            raise ModelNotFoundError(
                f"{spec_text}: the Hub has no repository {spec.repo_id} (or it is private: set HF_TOKEN)") from e
        except errors.RevisionNotFoundError as e:
            raise ModelNotFoundError(f"{spec_text}: {spec.repo_id} has no revision {spec.revision!r}") from e
        except Exception as e:  # noqa: BLE001  unreachable, rate-limited, server down: try the cache, say why
            reason = f"{type(e).__name__}: {e}".splitlines()[0]
    if listed is not None:
        chosen = pick_model_file(listed)
        if chosen is None:
            raise ModelNotFoundError(
                f"{spec_text}: {spec.repo_id} holds no model file filterdb reads; its files: {', '.join(listed[:20])}")
        path = hf_file(spec_text, spec.repo_id, chosen, spec.revision)
        return ResolvedSource(spec=spec_text, path=path, scheme="hf")

    cached = _cached_files(spec)
    if cached is None:
        raise SourceError(f"{spec_text}: cannot list the files of {_where(spec.repo_id, None, spec.revision)} "
                          f"({reason}): {_OFFLINE_HINT}")
    root, files = cached
    chosen = pick_model_file(files)
    if chosen is None:
        raise SourceError(f"{spec_text}: the cached snapshot of {spec.repo_id} holds no model file ({reason}); "
                          "name the file (hf:ORG/REPO/FILE) or connect to the Hub once")
    return ResolvedSource(spec=spec_text, path=root / chosen, scheme="hf")


register_source("hf", resolve_hf)
