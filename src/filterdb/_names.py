"""The one display-name rule for layers: what a table, the model card and the report show of a layer name.

TFLite (and ONNX converted from TensorFlow) name a fused operation by every op it absorbed, joined by ``;``:
``model/re_lu/Relu;model/conv2d/BiasAdd;model/conv2d/Conv2D;model/conv2d/BiasAdd/ReadVariableOp``. The
convolution's own op is the part whose last path component is a convolution (``Conv2D``, ``depthwise``,
``DepthwiseConv2dNative``, ``Conv`` …; the last such part when several are listed); the bias read,
activation and batch-norm parts are dropped. Without a convolution part, the first part that is not a
variable read. A name without ``;`` is shown whole. JSON and CSV keep the full name.
"""

from __future__ import annotations

import re

__all__ = ["display_name"]

_CONV_OP = re.compile(r"conv|depthwise", re.IGNORECASE)
_READ = re.compile(r"ReadVariableOp|/resource$", re.IGNORECASE)
_NOT_THE_CONV = re.compile(r"ReadVariableOp|/resource$|BiasAdd$|Relu6?$|FusedBatchNorm|/add$|/mul$", re.IGNORECASE)


def display_name(name: str) -> str:
    """The conv's own op name out of a fused name (see the module docstring); a name without ';' unchanged.

    >>> display_name("model/re_lu/Relu;model/conv2d/BiasAdd;model/conv2d/Conv2D;model/conv2d/BiasAdd/ReadVariableOp")
    'model/conv2d/Conv2D'
    >>> display_name("features.0.weight")
    'features.0.weight'
    """
    if ";" not in name:
        return name
    parts = [part for part in name.split(";") if part.strip()]
    convs = [p for p in parts if _CONV_OP.search(p.rsplit("/", 1)[-1]) and not _NOT_THE_CONV.search(p)]
    if convs:
        return convs[-1]
    ops = [p for p in parts if not _READ.search(p)]  # no conv part: the first op that is not a variable read
    return (ops or parts or [name])[0]
