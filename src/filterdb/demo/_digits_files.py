"""The digits family's files, written from numpy arrays: safetensors for every model, ONNX for one.

Both writers need no deep-learning framework and are deterministic (the same arrays give the same bytes), so
that ``scripts/make_digits_family.py`` can be re-run in CI and its output compared with the files shipped in
the package. The ONNX graph is written by hand with :mod:`onnx.helper` rather than by ``torch.onnx.export``,
whose output changes with the torch release.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from .._atomic import atomic_write_bytes

__all__ = ["ONNX_PRODUCER", "save_cnn_onnx", "save_weights"]

ONNX_PRODUCER = "filterdb scripts/make_digits_family.py"
_OPSET = 13


def save_weights(path: str | os.PathLike[str], state: Mapping[str, np.ndarray]) -> None:
    """Write a state_dict (name → array) as a safetensors file, atomically.

    The metadata is the one conventional key ``format: pt``: safetensors writes several keys in hash order,
    which would make the bytes differ from run to run.
    """
    from safetensors.numpy import save

    atomic_write_bytes(path, save({name: np.ascontiguousarray(value) for name, value in state.items()},
                                  metadata={"format": "pt"}))


def save_cnn_onnx(path: str | os.PathLike[str], state: Mapping[str, np.ndarray]) -> None:
    """The "cnn" architecture of the family (conv1 → conv2 → max pool → conv3 → mean → fc) as an ONNX graph.

    Node and initializer names follow torch's exporter (``/conv1/Conv``, ``conv1.weight``); the weights are
    float32 copies of ``state``'s values, so that both files hold the very same filters.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def conv(name: str, x: str) -> onnx.NodeProto:
        return helper.make_node("Conv", [x, f"{name}.weight", f"{name}.bias"], [f"/{name}/Conv_output_0"],
                                name=f"/{name}/Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])

    def relu(name: str) -> onnx.NodeProto:
        return helper.make_node("Relu", [f"/{name}/Conv_output_0"], [f"/{name}/Relu_output_0"], name=f"/{name}/Relu")

    nodes = [
        conv("conv1", "image"), relu("conv1"),
        conv("conv2", "/conv1/Relu_output_0"), relu("conv2"),
        helper.make_node("MaxPool", ["/conv2/Relu_output_0"], ["/pool/MaxPool_output_0"], name="/pool/MaxPool",
                         kernel_shape=[2, 2], strides=[2, 2]),
        conv("conv3", "/pool/MaxPool_output_0"), relu("conv3"),
        helper.make_node("GlobalAveragePool", ["/conv3/Relu_output_0"], ["/mean/output_0"], name="/mean"),
        helper.make_node("Flatten", ["/mean/output_0"], ["/flatten/output_0"], name="/flatten", axis=1),
        helper.make_node("Gemm", ["/flatten/output_0", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm",
                         transB=1),
    ]
    initializers = [numpy_helper.from_array(np.asarray(state[name], dtype=np.float32), name)
                    for name in sorted(state)]
    graph = helper.make_graph(
        nodes, "digits-cnn", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], initializers)
    model = helper.make_model(graph, producer_name=ONNX_PRODUCER, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = 8  # fixed, so that the bytes do not follow the installed onnx release
    onnx.checker.check_model(model)
    atomic_write_bytes(path, model.SerializeToString(deterministic=True))
