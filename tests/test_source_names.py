"""The one "is this a source name?" rule, on the inputs where the three former rules disagreed.

Before, the source registry (lower-case scheme regex), the manifest (scheme = a Python identifier) and the
demo (any ':' before '#') each had their own test; the expected answers below are written by hand from
the rule's definition: ``scheme:rest``, scheme two or more of [a-z0-9+.-] starting with a letter, rest not
starting with a slash.
"""

from __future__ import annotations

import pytest

from filterdb.errors import ModelNotFoundError
from filterdb.manifest import load_manifest
from filterdb.sources import is_source_name, resolve_source, source_scheme

CASES = [
    # text, scheme (None: a path)              registry / manifest / demo said before
    ("pypi:facenet-pytorch==2.6.0#a/pnet.pt", "pypi"),  # yes / yes / yes
    ("hf:org/model@main", "hf"),                  # yes / yes / yes
    ("my-scheme:thing", "my-scheme"),             # yes / no  / yes
    ("ab+c.d:x", "ab+c.d"),                       # yes / no  / yes
    ("Pypi:facenet-pytorch==2.6.0#a.pt", None),   # no  / yes / yes
    ("pypi:/absolute/file.onnx", None),           # no  / yes / yes
    ("C:\\models\\a.onnx", None),                 # no  / no  / yes
    ("C:/models/a.onnx", None),                   # no  / no  / yes
    ("https://example.invalid/a.onnx", None),     # no  / no  / yes
    ("runs/epoch:3.pt", None),                    # no  / no  / yes
    ("x:y", None),                                # no  / no  / yes
    ("model.onnx", None),                         # no  / no  / no
    ("", None),
]


@pytest.mark.parametrize(("text", "scheme"), CASES)
def test_the_rule(text, scheme):
    assert source_scheme(text) == scheme
    assert is_source_name(text) is (scheme is not None)


def test_manifest_keys_follow_the_rule(tmp_path):
    # rows the manifest once took for source names are now files beside the manifest, and the other way round
    manifest = tmp_path / "zoo.csv"
    manifest.write_text("file,name,task,visual_category,training_dataset\n"
                        "Pypi:thing==1#a.onnx,a,Classification,Natural,x\n"
                        "my-scheme:thing,b,Classification,Natural,x\n", encoding="utf-8")
    rows = load_manifest(manifest).rows
    assert rows[0].key == str((tmp_path / "Pypi:thing==1#a.onnx").resolve())
    assert rows[1].key == "my-scheme:thing"


def test_a_path_with_a_colon_resolves_to_the_file(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "epoch:3.pt").write_bytes(b"x")
    spec = str(folder / "epoch:3.pt")
    assert resolve_source(spec).scheme == "file" and resolve_source(spec).path == folder / "epoch:3.pt"


def test_an_unknown_scheme_is_named_but_an_existing_file_of_that_name_wins(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="unknown source scheme 'my-scheme'"):
        resolve_source("my-scheme:absent")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-scheme:present").write_bytes(b"x")
    assert resolve_source("my-scheme:present").scheme == "file"
