"""The examples of docs/prune.md and of README's "Prune plans" section run, as written, on one real module.

The fenced blocks are read from the documents, so an edited example stays tested. The folder holds what they
name: ``model.onnx``, ``model.pt`` (a state_dict) and ``model.safetensors``, all three the weights of one
small trained-shape CNN with batch norms (``module``, with a ``fc`` head), so that the plan made from a file
maps onto the module the Python block prunes.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
pytest.importorskip("onnx")
nn = torch.nn

from filterdb.cli import main  # noqa: E402
from filterdb.integrations.torch_pruning import conv_params  # noqa: E402

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[1]
PRUNE_MD, README = ROOT / "docs" / "prune.md", ROOT / "README.md"
_BLOCK = re.compile(r"^```(?P<lang>\w+)\n(?P<body>.*?)^```", re.S | re.M)


def _blocks(text: str, lang: str) -> list[str]:
    return [m["body"] for m in _BLOCK.finditer(text) if m["lang"] == lang]


def _commands(block: str) -> list[list[str]]:
    """The ``filterdb ...`` lines of a bash block, without their trailing comment, as argv."""
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("filterdb ")]


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    module = _Net().eval()
    torch.save(module.state_dict(), tmp_path / "model.pt")
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp_path / "model.safetensors"))
    torch.onnx.export(module, (torch.randn(1, 3, 32, 32),), str(tmp_path / "model.onnx"), dynamo=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path, module


def _run(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 0, (argv, out, err)
    return out


def test_the_command_lines_run(folder, capsys):
    path, _ = folder
    commands = [c for doc in (PRUNE_MD, README) for block in _blocks(doc.read_text(), "bash")
                for c in _commands(block) if c and c[0] == "prune"]
    assert len(commands) == 5  # three in docs/prune.md, two in the README
    for argv in commands:
        out = _run(argv, capsys)
        if "--json" in argv and "-o" not in argv:
            json.loads(out)
    plan = json.loads((path / "plan.json").read_text())  # `-o plan.json` wrote the plan
    assert plan["layers"] and plan["target"] == 0.5


def test_the_python_block_prunes_the_module(folder):
    _, module = folder
    before = conv_params(module)
    namespace: dict[str, object] = {"module": module, "torch": torch}
    exec(compile(_blocks(PRUNE_MD.read_text(), "python")[0], str(PRUNE_MD), "exec"), namespace)  # noqa: S102
    plan = namespace["plan"]
    assert (Path("plan.json")).stat().st_size > 0
    removed = 1 - conv_params(module) / before
    assert removed == pytest.approx(plan.params_removed / plan.params_total, rel=0.02)  # the planned share ± 2 %
    assert module(torch.randn(1, 3, 224, 224)).shape == (1, 10)  # "the module is now smaller", and still runs
