"""Tensors and answers on the wire: ``TensorProto`` both ways, and the probability out of a gRPC or REST answer.

Every answer that does not decode is a :class:`~foundation.errors.BadOutput` (a
``ValueError``), which the scorer counts as ``bad_output``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tensorflow.core.framework import tensor_pb2, types_pb2

from foundation.errors import BadOutput

#: The output the served signatures name (``models.export``).
OUTPUT = "probability"
_PROTO_DTYPES: dict[int, np.dtype[Any]] = {types_pb2.DT_FLOAT: np.dtype("<f4"), types_pb2.DT_HALF: np.dtype("<f2")}


def tensor_proto(array: NDArray[Any]) -> Any:
    """A float32 or float16 array as a ``TensorProto`` (little-endian ``tensor_content``)."""
    dtype = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.float16): types_pb2.DT_HALF}[array.dtype]
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_content = np.ascontiguousarray(array, _PROTO_DTYPES[dtype]).tobytes()
    return proto


def from_tensor_proto(proto: Any) -> NDArray[Any]:
    """A float32 or float16 ``TensorProto`` as an array, from ``tensor_content`` or the typed value fields.

    Raises
    ------
    foundation.errors.BadOutput
        Another dtype, or a value count that does not fit the shape (a ``ValueError``).
    """
    if proto.dtype not in _PROTO_DTYPES:
        msg = f"expected a DT_FLOAT or DT_HALF tensor, found dtype enum {proto.dtype}"
        raise BadOutput(msg)
    dtype = _PROTO_DTYPES[proto.dtype]
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    size = int(np.prod(shape, dtype=np.int64))
    if proto.tensor_content:
        if len(proto.tensor_content) % dtype.itemsize:
            msg = f"tensor_content of {len(proto.tensor_content)} bytes is not whole {dtype.itemsize}-byte values"
            raise BadOutput(msg)
        values = np.frombuffer(proto.tensor_content, dtype)
    elif proto.dtype == types_pb2.DT_FLOAT:
        values = np.asarray(proto.float_val, dtype)
    else:  # DT_HALF values travel as their 16 bits in int32 fields
        values = np.asarray(proto.half_val, np.int32).astype(np.uint16).view(dtype)
    if 0 < values.size < size and not proto.tensor_content:  # TensorFlow's convention: the last value repeats
        values = np.concatenate([values, np.full(size - values.size, values[-1], dtype)])
    if values.size != size:
        msg = f"tensor of shape {shape} holds {values.size} values"
        raise BadOutput(msg)
    return values.reshape(shape).astype(dtype.newbyteorder("="))


def decode_grpc(response: Any) -> tuple[NDArray[Any], int | None]:
    """A ``PredictResponse``'s probability and the version that answered (``None`` when it does not say)."""
    if OUTPUT not in response.outputs:
        msg = f"the response has no 'probability' output; outputs: {sorted(response.outputs)}"
        raise BadOutput(msg)
    version = response.model_spec.version.value if response.model_spec.HasField("version") else None
    return from_tensor_proto(response.outputs[OUTPUT]), version


def decode_rest(data: bytes) -> NDArray[Any]:
    """The probability of a REST ``:predict`` answer in the columnar format (``{"outputs": ...}``), as float32.

    >>> decode_rest(b'{"outputs": [[[0.25, 0.5]]]}').shape
    (1, 1, 2)
    """
    try:
        doc = json.loads(data)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        msg = f"the REST answer is not JSON: {exc}"
        raise BadOutput(msg) from exc
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if isinstance(outputs, dict):  # several named outputs come as an object
        outputs = outputs.get(OUTPUT)
    if outputs is None:
        msg = "the REST answer has no columnar 'outputs' probability"
        raise BadOutput(msg)
    try:
        return np.asarray(outputs, np.float32)
    except ValueError as exc:  # ragged lists, strings
        msg = f"the REST 'outputs' are not an array of numbers: {exc}"
        raise BadOutput(msg) from exc
