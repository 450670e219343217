"""numpy arrays <-> ``adept.v1.Tensor`` (raw little-endian bytes, shape, dtype)."""

from __future__ import annotations

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
    """Return the array of a Tensor message (a read-only view of its bytes, native byte order).

    Raises TensorError naming ``name`` when the dtype is unknown, a dimension is negative, the
    shape is larger than ``max_elements``, or the byte count does not match the shape.
    """
    dtype = _TO_NUMPY.get(tensor.dtype)
    if dtype is None:
        raise TensorError(f"{name}: unknown or unset dtype {tensor.dtype}")
    shape = tuple(int(d) for d in tensor.shape)
    if any(d < 0 for d in shape):
        raise TensorError(f"{name}: negative dimension in shape {shape}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if max_elements is not None and count > max_elements:
        raise TensorError(f"{name}: {count} elements is more than the limit of {max_elements}")
    if len(tensor.data) != count * dtype.itemsize:
        raise TensorError(f"{name}: {len(tensor.data)} bytes do not hold shape {shape} of {dtype_name(tensor.dtype)} "
                          f"({count * dtype.itemsize} bytes)")
    array = np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
    if dtype.byteorder == "<" and not np.little_endian:  # only on big-endian hosts
        array = array.astype(dtype.newbyteorder("="))
    return array
