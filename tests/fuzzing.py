"""Hostile model files, made by code: seeded mutations of real files and the crafted lies of issue 12.

Shared by ``tests/test_fuzz.py`` (a bounded number of cases in CI) and ``bench/fuzz.py`` (a long campaign by
hand). Nothing here is a bomb on disk: every file is generated inside a temporary folder.

Cases run in a worker process (:func:`run_cases`), many files per process: a segfault or a hang kills only
the worker, the parent records which file did it and starts a new worker on the next file.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

# --------------------------------------------------------------------------------------------------------
# mutations of real files


def flip_bytes(data: bytes, rng: random.Random, n_flips: int) -> bytes:
    """``n_flips`` random bytes replaced by random values (never the same value)."""
    out = bytearray(data)
    for _ in range(n_flips):
        i = rng.randrange(len(out))
        out[i] = (out[i] + rng.randrange(1, 256)) % 256
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, len(data))]


def set_word(data: bytes, rng: random.Random) -> bytes:
    """An aligned 4-byte word set to an extreme value: how sizes, offsets and counts lie."""
    out = bytearray(data)
    i = rng.randrange(0, max(len(out) - 4, 1)) & ~3
    out[i:i + 4] = struct.pack("<I", rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000, len(data) * 7]))
    return bytes(out)


MUTATORS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "flip1": lambda d, r: flip_bytes(d, r, 1),
    "flip8": lambda d, r: flip_bytes(d, r, 8),
    "truncate": truncate,
    "word": set_word,
}


def mutants(data: bytes, seed: int, n: int) -> list[tuple[str, bytes]]:
    """``n`` (name, bytes) mutants of ``data``, the same for the same seed."""
    rng = random.Random(seed)
    kinds = sorted(MUTATORS)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        out.append((f"{kind}-{seed}-{i}", MUTATORS[kind](data, rng)))
    return out


# --------------------------------------------------------------------------------------------------------
# crafted lies (issue 12), one builder per hostile file; each returns the path it wrote


def onnx_model(nodes, initializers, *, sparse=(), opset=21, inputs=None):
    from onnx import TensorProto, helper

    inputs = inputs if inputs is not None else [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializers, sparse_initializer=list(sparse))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def onnx_block_size_bomb(path: Path) -> Path:
    """DequantizeLinear with a block_size that repeats a 1-element scale into gigabytes."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("wq", TensorProto.INT8, [4, 3, 3, 3], np.ones(108, np.int8).tobytes(), raw=True)
    s = helper.make_tensor("s", TensorProto.FLOAT, [1, 3, 3, 3], np.ones(27, np.float32).tobytes(), raw=True)
    nodes = [helper.make_node("DequantizeLinear", ["wq", "s"], ["w"], axis=0, block_size=2**31),
             helper.make_node("Conv", ["x", "w"], ["y"])]
    path.write_bytes(onnx_model(nodes, [w, s]).SerializeToString())
    return path


def onnx_sparse_bomb(path: Path) -> Path:
    """A sparse initializer of one value declaring a dense shape of 3.4 GiB."""
    from onnx import TensorProto, helper

    values = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    indices = helper.make_tensor("i", TensorProto.INT64, [1], [0])
    sparse = helper.make_sparse_tensor(values, indices, [30000, 30000, 1, 1])
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"])]
    path.write_bytes(onnx_model(nodes, [], sparse=[sparse]).SerializeToString())
    return path


def onnx_chain(path: Path, depth: int = 30) -> Path:
    """A DequantizeLinear chain whose every level reads the previous one three times (3^depth if unmemoised)."""
    from onnx import TensorProto, helper

    inits = [helper.make_tensor("v0", TensorProto.FLOAT, [2, 3, 3, 3], np.ones(54, np.float32).tobytes(), raw=True)]
    nodes = [helper.make_node("DequantizeLinear", [f"v{i}", f"v{i}", f"v{i}"], [f"v{i + 1}"], axis=0)
             for i in range(depth)]
    nodes.append(helper.make_node("Conv", ["x", f"v{depth}"], ["y"]))
    path.write_bytes(onnx_model(nodes, inits).SerializeToString())
    return path


def onnx_conv(path: Path, *, dims=(4, 3, 3, 3), group: int | None = None, node_name: bytes = b"conv") -> Path:
    """One Conv; its weight's declared dims, its group and its 4-byte name (raw bytes, any encoding) as given."""
    from onnx import TensorProto, helper

    n = int(np.prod([abs(d) for d in dims]))
    w = helper.make_tensor("w", TensorProto.FLOAT, [abs(d) for d in dims], np.ones(n, np.float32).tobytes(), raw=True)
    del w.dims[:]
    w.dims.extend(dims)
    attrs = {} if group is None else {"group": group}
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="NAME", **attrs)
    data = onnx_model([node], [w]).SerializeToString()
    assert len(node_name) == 4  # replaced in place: protobuf length prefixes stay right
    path.write_bytes(data.replace(b"NAME", node_name))
    return path


def torch_zero_stride_bomb(path: Path) -> Path:
    """A .pt whose tensor is a zero-stride view of one float declaring 14 GB."""
    import torch

    torch.save({"conv.weight": torch.zeros(1).expand(60000, 60000, 1, 1)}, path)
    return path


CODE_RAN = "FILTERDB-HOSTILE-CODE-RAN"  # what the hostile TorchScript prints if its code ever runs


def torchscript_running_code(path: Path) -> Path:
    """A TorchScript archive whose __setstate__ prints CODE_RAN and then spins forever if torch.jit.load runs it."""
    import torch

    class Hostile(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

        @torch.jit.export
        def __getstate__(self) -> tuple[bool, bool]:
            return (self.training, True)

        @torch.jit.export
        def __setstate__(self, state: tuple[bool, bool]) -> None:
            print("FILTERDB-HOSTILE-CODE-RAN")
            i = 0
            while state[1]:
                i += 1
            self.training = state[0]

    torch.manual_seed(0)
    torch.jit.script(Hostile()).save(str(path))
    return path


def damage_zip_member(src: Path, dst: Path, member_suffix: str) -> Path:
    """Copy a zip, changing one byte inside the stored data of the first member ending in ``member_suffix``."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(member_suffix))
    header = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[header + 26:header + 30])
    start = header + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0x55
    dst.write_bytes(bytes(data))
    return dst


def keras_h5(path: Path, make_kernel: Callable[[object, str], None]) -> Path:
    """A Keras 2 weights file of one Conv2D layer whose kernel dataset ``make_kernel(group, name)`` creates."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"conv"]
        f.attrs["keras_version"] = b"2.15.0"
        group = f.create_group("conv")
        group.attrs["weight_names"] = [b"conv/kernel:0"]
        make_kernel(group.create_group("conv"), "kernel:0")
    return path


def h5_huge_shape(path: Path) -> Path:
    return keras_h5(path, lambda g, n: g.create_dataset(n, shape=(3, 3, 60000, 60000), dtype="f4",
                                                        chunks=(1, 1, 1000, 1000), compression="gzip"))


def h5_external_storage(path: Path, secret: Path) -> Path:
    size = secret.stat().st_size // 4 * 4
    return keras_h5(path, lambda g, n: g.create_dataset(n, shape=(1, 1, 1, size // 4), dtype="f4",
                                                        external=[(str(secret), 0, size)]))


def h5_external_link(path: Path, target: Path) -> Path:
    import h5py

    with h5py.File(target, "w") as t:
        t.create_dataset("kernel", data=np.ones((3, 3, 2, 4), np.float32))
    return keras_h5(path, lambda g, n: g.__setitem__(n, h5py.ExternalLink(str(target), "/kernel")))


def h5_virtual(path: Path, source: Path) -> Path:
    import h5py

    with h5py.File(source, "w") as s:
        s.create_dataset("data", data=np.ones((3, 3, 2, 4), np.float32))
    layout = h5py.VirtualLayout(shape=(3, 3, 2, 4), dtype="f4")
    layout[...] = h5py.VirtualSource(str(source), "data", shape=(3, 3, 2, 4))
    return keras_h5(path, lambda g, n: g.create_virtual_dataset(n, layout))


def keras_zip_inflating(path: Path, inflated_mib: int = 64) -> Path:
    """A .keras archive whose weights member inflates from ~100 KB to ``inflated_mib`` MiB."""
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": []}}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        zf.writestr("model.weights.h5", b"\0" * (inflated_mib * 2**20))
    return path


def safetensors_empty_tensors(path: Path, n: int) -> Path:
    header = {f"layer{i}.weight": {"dtype": "F32", "shape": [0, 3, 3, 3], "data_offsets": [0, 0]} for i in range(n)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


# --------------------------------------------------------------------------------------------------------
# running cases in a worker process

# Source of `_peak_kib()` for child processes (they need `import resource`): the peak RSS in KiB of the
# process and its children. It reads VmHWM, the peak of this process image since exec: ru_maxrss(RUSAGE_SELF)
# would not do, as Linux carries the RSS of the process that forked the child across exec (a child of a
# 1.7 GB pytest would report >= 1.7 GB).
PEAK_KIB_SOURCE = """
def _peak_kib():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with open("/proc/self/status") as f:
            own = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        pass
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""

# The worker: reads each path it is given, prints one JSON line per file, and at the end its peak RSS.
_WORKER = r"""
import json, os, resource, sys, time
from filterdb.errors import FilterDBError
from filterdb.readers import ReadOptions, read_path
""" + PEAK_KIB_SOURCE + r"""limit = int(sys.argv[1])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
for line in open(sys.argv[2], encoding="utf-8"):
    path = line.rstrip("\n")
    print(json.dumps({"start": path}), flush=True)
    if os.environ.get("FILTERDB_FUZZ_CRASH_ON") == path:  # lets the tests check the harness itself
        os.abort()
    t = time.perf_counter()
    try:
        read_path(path, ReadOptions())
        outcome, detail = "ok", ""
    except FilterDBError as e:
        outcome, detail = "refused", type(e).__name__ + ": " + str(e)[:200]
    except BaseException as e:
        outcome, detail = "unexpected", type(e).__name__ + ": " + str(e)[:200]
    rss = _peak_kib()
    print(json.dumps({"path": path, "outcome": outcome, "detail": detail, "seconds": time.perf_counter() - t,
                      "rss_kib": rss}), flush=True)
"""


@dataclass
class Outcome:
    path: str
    outcome: str  # ok, refused, unexpected, crash, hang
    detail: str = ""
    seconds: float = 0.0
    rss_mib: float = 0.0  # the worker's peak resident memory when this case ended (a running maximum)


def run_cases(paths: list[Path], *, case_timeout: float = 60.0, address_limit: int = 0,
              env: dict[str, str] | None = None, worker: str = _WORKER) -> list[Outcome]:
    """Read every path in worker processes (``worker``: the script, by default ``read_path`` of each); a crash
    or hang is charged to the file being read."""
    todo = [str(p) for p in paths]
    results: list[Outcome] = []
    listing = Path(paths[0]).parent / ".fuzz-cases.txt" if paths else None
    while todo:
        assert listing is not None
        listing.write_text("".join(p + "\n" for p in todo), encoding="utf-8")  # a file: no pipe to deadlock on
        proc = subprocess.Popen([sys.executable, "-c", worker, str(address_limit), str(listing)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=env or dict(os.environ))
        assert proc.stdout is not None
        current, started = None, time.monotonic()
        done_here = 0
        import selectors

        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            ready = selector.select(timeout=1.0)
            if current is not None and time.monotonic() - started > case_timeout:
                proc.kill()
                proc.wait()
                results.append(Outcome(current, "hang", f"no answer in {case_timeout:.0f} s"))
                done_here += 1
                break
            if not ready:
                if proc.poll() is not None and current is None:
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                code = proc.wait()
                if current is not None:
                    results.append(Outcome(current, "crash", f"worker exited with {code}"))
                    done_here += 1
                break
            record = json.loads(line)
            if "start" in record:
                current, started = record["start"], time.monotonic()
            else:
                results.append(Outcome(record["path"], record["outcome"], record["detail"], record["seconds"],
                                       record["rss_kib"] / 1024))
                current = None
                done_here += 1
        selector.close()
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        todo = todo[done_here:]
    if listing is not None:
        listing.unlink(missing_ok=True)
    return results


def tflite_lying_dense_levels(src: Path, dst: Path, size: int = 0x7FFFFFFF) -> Path:
    """A copy of a sparse TFLite model whose first sparse tensor's DENSE levels each declare ``size`` entries."""
    import tflite

    data = bytearray(src.read_bytes())
    graph = tflite.Model.GetRootAsModel(bytes(data), 0).Subgraphs(0)
    for t in range(graph.TensorsLength()):
        sparsity = graph.Tensors(t).Sparsity()
        if sparsity is None:
            continue
        for level in range(sparsity.DimMetadataLength()):
            meta = sparsity.DimMetadata(level)
            field = meta._tab.Offset(6)  # DimensionMetadata.dense_size
            if meta.Format() == 0 and field:
                data[meta._tab.Pos + field:meta._tab.Pos + field + 4] = struct.pack("<i", size)
        break
    dst.write_bytes(bytes(data))
    return dst


def report_failures(results: list, failures: list, keep: Path) -> None:
    """The closing lines of a fuzz run (bench/fuzz*.py): the slowest case, the peak worker memory, and each
    failing input copied into ``keep`` and named with its outcome."""
    import shutil

    print(f"slowest case: {max(r.seconds for r in results):.2f} s; "
          f"peak worker RSS: {max(r.rss_mib for r in results):.0f} MiB")
    if failures:
        keep.mkdir(exist_ok=True)
        for r in failures:
            shutil.copy(r.path, keep / Path(r.path).name)
            print(f"  {r.outcome}: {Path(r.path).name}: {r.detail} ({r.rss_mib:.0f} MiB)")
