"""Records that flow from readers to checks, the store and analyses.

A reader turns a model into a :class:`ModelRecord`: facts about the model (:class:`ModelInfo`) and one
:class:`ConvLayer` per convolution, with its weight in the canonical PyTorch layout (docs/reference.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, Mapping

import numpy as np

__all__ = ["ConvLayer", "ModelInfo", "ModelRecord", "LayerKind", "DepthSource"]

LayerKind = Literal["conv", "grouped", "depthwise", "transpose"]
DepthSource = Literal["graph", "order"]


@dataclass(frozen=True, eq=False)
class ConvLayer:
    """One convolution layer and its weight.

    ``weight`` is float32 in PyTorch layout: (O, I/g, *kernel) for a convolution, (I, O/g, *kernel)
    for a transposed convolution. Quantised or float16 weights are already dequantised; the original
    storage type is kept in ``storage_dtype``.
    """

    name: str  # the layer's name in its file (node, module or tensor name)
    op_type: str  # the operator as the format names it: "Conv", "QLinearConv", "DEPTHWISE_CONV_2D", ...
    kind: LayerKind  # conv, grouped, depthwise (groups == input channels) or transpose
    weight: np.ndarray  # float32, canonical layout (see class docstring)
    groups: int = 1  # convolution groups
    stride: tuple[int, ...] | None = None  # None where the format does not say
    dilation: tuple[int, ...] | None = None  # None where the format does not say
    conv_depth: int | None = None  # rank of the layer's graph level among 2-D conv levels (docs/reference.md §2)
    conv_depth_norm: float | None = None  # conv_depth / (L - 1); 0 when L == 1
    depth_source: DepthSource = "graph"  # "order" where the format has no graph (bare state_dict)
    storage_dtype: str = "float32"  # dtype of the weight as stored in the file, before dequantisation
    notes: tuple[str, ...] = ()  # reader remarks: "int8 per-channel dequantised", "densified", ...

    @property
    def spatial_ndim(self) -> int:
        """1 for Conv1d, 2 for Conv2d, 3 for Conv3d."""
        return self.weight.ndim - 2

    @property
    def kernel(self) -> tuple[int, ...]:
        """Kernel size, e.g. (3, 3)."""
        return tuple(int(k) for k in self.weight.shape[2:])

    @property
    def n_filters(self) -> int:
        """Number of k-dimensional filter slices: weight.shape[0] * weight.shape[1]."""
        return int(self.weight.shape[0]) * int(self.weight.shape[1])

    def filters(self) -> np.ndarray:
        """The filters as an (n_filters, prod(kernel)) float32 array, in (out, in) order."""
        return self.weight.reshape(self.n_filters, -1)


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a model file that do not depend on any one layer."""

    source: str  # what the user named: a path, "pypi:pkg==1.0#file", or a live object's class
    format: str  # reader name: "onnx", "pytorch", "torchscript", "safetensors", "keras", "tflite", ...
    path: str | None = None  # the local file read, None for live objects
    producer: str | None = None  # exporter or framework that wrote the file, where recorded
    producer_version: str | None = None
    opset: int | None = None  # ONNX default-domain opset, TFLite schema version, where known
    op_counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))  # op type -> count
    n_parameters: int = 0  # number of values in all weight tensors of the model
    sha256: str | None = None  # content hash of the file
    size_bytes: int | None = None  # file size
    notes: tuple[str, ...] = ()  # reader remarks about the whole model


@dataclass(frozen=True, eq=False)
class ModelRecord:
    """A model as filterdb sees it: its facts and its convolution layers, in graph order."""

    info: ModelInfo
    layers: tuple[ConvLayer, ...]

    @property
    def layers_2d(self) -> tuple[ConvLayer, ...]:
        """The layers with 2-D kernels: the ones that hold filters in the paper's sense."""
        return tuple(layer for layer in self.layers if layer.spatial_ndim == 2)
