"""The wire between the grader and the sandbox: framed JSON headers plus raw array buffers.

A frame is a 4-byte big-endian header length, a UTF-8 JSON header, then the raw bytes of the
buffers the header lists. Values travel as a small JSON tree whose leaves are scalars, strings
or arrays (dtype string, shape and the index of a raw buffer). Nothing on the wire is ever
unpickled or executed: `decode` builds plain NumPy arrays from validated bytes.

This module is also sent, as source text, to the sandboxed child (see `sandbox.py`), so it
imports only the standard library and NumPy, and nothing from the `autograder` package.
"""

from __future__ import annotations

import json
import re
import socket
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "Opaque",
    "WireError",
    "decode",
    "encode",
    "recv_frame",
    "send_frame",
]

_LENGTH = struct.Struct("!I")
_DTYPE = re.compile(r"^[<>|=]?[biuf](1|2|4|8|16)$")
_MAX_DEPTH = 6
_MAX_ITEMS = 256
_MAX_DIMS = 8
_REPR_CHARS = 300


class WireError(Exception):
    """Raised when a frame or value does not follow the protocol (malformed, oversized, unsafe)."""


class Opaque:
    """A value the child could not send as data: only its type name and a short repr travel."""

    __slots__ = ("repr", "type_name")

    def __init__(self, type_name: str, repr_text: str) -> None:
        self.type_name = type_name
        self.repr = repr_text

    def __repr__(self) -> str:
        return f"<{self.type_name}: {self.repr}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and (self.type_name, self.repr) == (
            other.type_name,
            other.repr,
        )

    def __hash__(self) -> int:
        return hash((self.type_name, self.repr))


def _safe_repr(value: object) -> str:
    try:
        text = repr(value)
    except BaseException:  # a hostile __repr__ must not break encoding
        text = "<unprintable>"
    return text[:_REPR_CHARS]


def _type_name(value: object) -> str:
    kind = type(value)
    module = getattr(kind, "__module__", "")
    name = getattr(kind, "__qualname__", "?")
    return name if module in ("builtins", "__main__", "") else f"{module}.{name}"


def encode(value: object, buffers: list[bytes], depth: int = 0) -> dict[str, Any]:
    """Turn a Python value into a JSON-able tree, appending array bytes to `buffers`."""
    if value is None:
        return {"t": "none"}
    if isinstance(value, (bool, np.bool_)) and type(value) in (bool, np.bool_):
        return {"t": "bool", "v": bool(value)}
    if type(value) is int:
        return {"t": "int", "v": value}
    if type(value) is float:
        return {"t": "float", "v": value}
    if type(value) is str:
        return {"t": "str", "v": value[:_REPR_CHARS]}
    if isinstance(value, np.generic) and not isinstance(value, np.object_):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        array = np.asarray(value)
        if array.dtype.kind in "biuf" and array.ndim <= _MAX_DIMS:
            if array.dtype.kind == "b":
                array = array.astype("|b1")
            buffers.append(array.tobytes())
            return {
                "t": "array",
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "buf": len(buffers) - 1,
                "cls": _type_name(value),
            }
        return {"t": "object", "type": f"ndarray of dtype {array.dtype}", "repr": ""}
    if type(value) in (tuple, list) and depth < _MAX_DEPTH:
        items = list(value)  # type: ignore[call-overload]
        return {
            "t": "tuple" if type(value) is tuple else "list",
            "items": [encode(item, buffers, depth + 1) for item in items[:_MAX_ITEMS]],
            "length": len(items),
        }
    return {"t": "object", "type": _type_name(value), "repr": _safe_repr(value)}


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise WireError(what)


def decode(node: object, buffers: list[bytes], depth: int = 0) -> object:
    """Rebuild a value from `encode`'s tree, validating every field; raises `WireError`."""
    _expect(isinstance(node, dict) and depth <= _MAX_DEPTH, "value is not an object")
    assert isinstance(node, dict)
    kind = node.get("t")
    if kind == "none":
        return None
    if kind == "bool":
        _expect(type(node.get("v")) is bool, "bad bool")
        return node["v"]
    if kind == "int":
        _expect(type(node.get("v")) is int, "bad int")
        return node["v"]
    if kind == "float":
        _expect(type(node.get("v")) in (float, int), "bad float")
        return float(node["v"])
    if kind == "str":
        _expect(type(node.get("v")) is str, "bad str")
        return str(node["v"])[:_REPR_CHARS]
    if kind == "array":
        return _decode_array(node, buffers)
    if kind in ("tuple", "list"):
        items = node.get("items")
        _expect(isinstance(items, list) and len(items) <= _MAX_ITEMS, "bad sequence")
        assert isinstance(items, list)
        decoded = [decode(item, buffers, depth + 1) for item in items]
        return tuple(decoded) if kind == "tuple" else decoded
    if kind == "object":
        type_name, text = node.get("type"), node.get("repr", "")
        _expect(type(type_name) is str and type(text) is str, "bad object")
        return Opaque(str(type_name)[:_REPR_CHARS], str(text)[:_REPR_CHARS])
    raise WireError(f"unknown value kind {kind!r}")


def _decode_array(node: dict[str, Any], buffers: list[bytes]) -> np.ndarray:
    dtype_text, shape, index = node.get("dtype"), node.get("shape"), node.get("buf")
    _expect(type(dtype_text) is str and bool(_DTYPE.match(dtype_text)), "bad dtype")
    _expect(
        isinstance(shape, list)
        and len(shape) <= _MAX_DIMS
        and all(type(n) is int and n >= 0 for n in shape),
        "bad shape",
    )
    _expect(type(index) is int and 0 <= index < len(buffers), "bad buffer index")
    dtype = np.dtype(dtype_text)
    _expect(dtype.kind in "biuf", "dtype is not real numeric")
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    assert type(index) is int
    raw = buffers[index]
    _expect(size * dtype.itemsize == len(raw), "buffer size does not match dtype and shape")
    array: np.ndarray = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return array


def send_frame(sock: socket.socket, header: dict[str, Any], buffers: Sequence[bytes] = ()) -> None:
    """Write one frame: the header (with the buffer lengths added) and the raw buffers."""
    header = dict(header, lengths=[len(b) for b in buffers])
    data = json.dumps(header, separators=(",", ":")).encode()
    sock.sendall(b"".join([_LENGTH.pack(len(data)), data, *buffers]))


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the connection")
        chunks += chunk
    return bytes(chunks)


def recv_frame(
    sock: socket.socket, *, max_header: int = 1 << 20, max_total: int = 1 << 28
) -> tuple[dict[str, Any], list[bytes]]:
    """Read one frame; raises `WireError` for malformed or oversized ones, `EOFError` at end."""
    (length,) = _LENGTH.unpack(_recv_exactly(sock, _LENGTH.size))
    _expect(0 < length <= max_header, f"header of {length} bytes is out of bounds")
    try:
        header = json.loads(_recv_exactly(sock, length))
    except (ValueError, RecursionError) as error:
        raise WireError(f"header is not JSON: {error}") from None
    _expect(isinstance(header, dict), "header is not an object")
    lengths = header.get("lengths", [])
    _expect(
        isinstance(lengths, list) and all(type(n) is int and n >= 0 for n in lengths),
        "bad buffer lengths",
    )
    _expect(sum(lengths) <= max_total, "buffers exceed the size limit")
    return header, [_recv_exactly(sock, n) for n in lengths]
