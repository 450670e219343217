"""numpy arrays <-> ``adept.v1.Tensor`` (raw little-endian bytes, shape, dtype)."""

from __future__ import annotations

import math

import numpy as np

from adept_client.proto.adept.v1 import world_model_pb2 as pb

_TO_NUMPY = {
    pb.DTYPE_FLOAT32: np.dtype("<f4"),
    pb.DTYPE_FLOAT64: np.dtype("<f8"),
    pb.DTYPE_INT32: np.dtype("<i4"),
    pb.DTYPE_INT64: np.dtype("<i8"),
    pb.DTYPE_BOOL: np.dtype("bool"),
    pb.DTYPE_UINT8: np.dtype("u1"),
}
_FROM_KIND = {(dtype.kind, dtype.itemsize): code for code, dtype in _TO_NUMPY.items()}
MAX_RANK = 32
"""Dimensions a decoded Tensor may have at most (numpy allows 64)."""
MAX_ELEMENTS = 2**31 - 1
"""Elements (and the size of any one dimension) a decoded Tensor may have at most, whatever ``max_elements`` says."""
_NAMES = {code: pb.DType.Name(code).removeprefix("DTYPE_").lower() for code in _TO_NUMPY}


class TensorError(ValueError):
    """A Tensor message that cannot be decoded (unknown dtype, bad shape, wrong byte count)."""


def dtype_name(code: int) -> str:
    """Return a readable dtype name for a DType code, e.g. 'float32'."""
    return _NAMES.get(code, f"dtype {code}")


def to_tensor(array: np.ndarray) -> pb.Tensor:
    """Return ``array`` as a Tensor message (C order, little-endian); raises TensorError for other dtypes."""
    array = np.asarray(array)
    code = _FROM_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise TensorError(f"cannot send dtype {array.dtype}; use one of {sorted(set(_NAMES.values()))}")
    little = array.astype(_TO_NUMPY[code], copy=False)
    return pb.Tensor(dtype=code, shape=list(array.shape), data=np.ascontiguousarray(little).tobytes())


def from_tensor(tensor: pb.Tensor, name: str = "tensor", max_elements: int | None = None) -> np.ndarray:
    """Return the array of a Tensor message (a read-only view of its bytes, native byte order; bool: a copy).

    Raises TensorError naming ``name`` when the dtype is unknown, the shape has more than
    ``MAX_RANK`` dimensions or a negative one, the shape is larger than ``max_elements`` (or a
    dimension is, when another is 0), or the byte count does not match the shape. Sizes are
    Python ints (no overflow), checked before anything is allocated or reshaped.
    """
    dtype = _TO_NUMPY.get(tensor.dtype)
    if dtype is None:
        raise TensorError(f"{name}: unknown or unset dtype {tensor.dtype}")
    shape = tuple(int(d) for d in tensor.shape)
    if len(shape) > MAX_RANK:
        raise TensorError(f"{name}: {len(shape)} dimensions is more than the limit of {MAX_RANK}")
    if any(d < 0 for d in shape):
        raise TensorError(f"{name}: negative dimension in shape {_short(shape)}")
    limit = MAX_ELEMENTS if max_elements is None else min(max_elements, MAX_ELEMENTS)
    count = math.prod(shape)
    if count > limit or any(d > limit for d in shape):
        raise TensorError(f"{name}: shape {_short(shape)} is larger than the limit of {limit} elements")
    if len(tensor.data) != count * dtype.itemsize:
        raise TensorError(f"{name}: {len(tensor.data)} bytes do not hold shape {_short(shape)} of "
                          f"{dtype_name(tensor.dtype)} ({count * dtype.itemsize} bytes)")
    if dtype.kind == "b":  # any nonzero byte is True (numpy would keep e.g. 2 as a bool that is not True)
        return np.frombuffer(tensor.data, dtype=np.uint8).reshape(shape) != 0
    array = np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
    if dtype.byteorder == "<" and not np.little_endian:  # only on big-endian hosts
        array = array.astype(dtype.newbyteorder("="))
    return array


def _short(shape: tuple[int, ...]) -> str:
    """The shape as text, at most ~200 characters (a hostile shape can be long)."""
    text = str(shape)
    return text if len(text) <= 200 else text[:190] + " ...)"
