"""The wire between the grader and the sandbox: framed JSON headers plus raw array buffers.

A frame is a 4-byte big-endian header length, a UTF-8 JSON header, then the raw bytes of the
buffers the header lists. Values travel as a small JSON tree whose leaves are scalars, strings
or arrays (dtype string, shape and the index of a raw buffer), and whose inner nodes are
tuples, lists and dicts. Nothing on the wire is ever unpickled or executed: `decode` builds
plain NumPy arrays from validated bytes, and plain containers of them.

What travels as data, both ways: None, bool, int, float, str (cut at 300 characters), real and
boolean NumPy arrays and scalars, and, nested at most 6 deep, exact tuples, lists (their first
256 items) and dicts. A dict travels only if it is exactly a `dict` with at most 256 entries
whose keys are all exactly `str` (at most 300 characters, no lone surrogate) or exactly `int`
(64-bit); the entries keep their order. Anything else travels as an `Opaque` (its type name and
a short repr), dict subclasses included (`OrderedDict`, `defaultdict`, a class of the
student's): the wire never calls a method of theirs (`items`, `keys`, `__eq__`, `__hash__`), so
none can break the encoding or make the dict look other than it is.

The rule for anything received: `recv_frame` and `decode` raise `WireError`, and only
`WireError`, for whatever the other side sends (bytes that are not UTF-8, JSON that is not
strict, nesting, NaN, a dtype NumPy would refuse, a shape whose size does not fit), so a forged
reply costs the call it answers and nothing else. Strings arrive as valid Unicode: a lone
surrogate (which JSON's `\\udXXX` escapes can carry) becomes U+FFFD, so no text from the other
side can make a later `encode("utf-8")` fail.

This module is also sent, as source text, to the sandboxed child (see `launch.py`), so it
imports only the standard library and NumPy, and nothing from the `autograder` package.
"""

from __future__ import annotations

import json
import math
import re
import socket
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "Opaque",
    "WireError",
    "clean_text",
    "decode",
    "encode",
    "frame",
    "recv_frame",
    "send_frame",
]

_LENGTH = struct.Struct("!I")
_MAX_DEPTH = 6
_MAX_ITEMS = 256
_MAX_KEY = 1 << 63
_MAX_DIMS = 8
_MAX_DIM = 1 << 48
_MAX_BUFFERS = 1 << 14
_REPR_CHARS = 300
_TOGETHER = 1 << 20
"""Buffers of a frame up to this size in all are read at once (large ones one by one, so that
cutting them apart never holds a second copy of a large message)."""
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _dtypes() -> dict[str, np.dtype[Any]]:
    """Every dtype string the wire accepts, mapped to its dtype: real numbers and booleans.

    Untrusted text is looked up here, never given to `np.dtype` (which refuses some strings a
    pattern would allow, such as "f1", and accepts others a pattern would not, such as "O")."""
    table: dict[str, np.dtype[Any]] = {}
    for order in ("", "<", ">", "|", "="):
        for kind in "biuf":
            for size in (1, 2, 4, 8, 16):
                text = f"{order}{kind}{size}"
                try:
                    dtype = np.dtype(text)
                except TypeError:
                    continue
                if dtype.kind == kind and dtype.itemsize == size:
                    table[text] = dtype
    return table


_DTYPES = _dtypes()
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so it always encodes as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)


def _clean_tree(node: Any) -> Any:
    """A JSON tree with `clean_text` applied to every string, keys included."""
    if isinstance(node, str):
        return clean_text(node)
    if isinstance(node, list):
        return [_clean_tree(item) for item in node]
    if isinstance(node, dict):
        return {clean_text(key): _clean_tree(value) for key, value in node.items()}
    return node


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
    if type(value) is np.ndarray:  # the most common value first
        return _encode_array(value, value, buffers)
    if value is None:
        return {"t": "none"}
    if isinstance(value, (bool, np.bool_)) and type(value) in (bool, np.bool_):
        return {"t": "bool", "v": bool(value)}
    if type(value) is int:
        return {"t": "int", "v": value}
    if type(value) is float:
        if not math.isfinite(value):  # strict JSON has no NaN or Infinity: send them by name
            return {"t": "float", "v": "nan" if value != value else "inf" if value > 0 else "-inf"}
        return {"t": "float", "v": value}
    if type(value) is str:
        return {"t": "str", "v": value[:_REPR_CHARS]}
    if isinstance(value, np.generic) and not isinstance(value, np.object_):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        return _encode_array(value, np.asarray(value), buffers)
    if type(value) in (tuple, list) and depth < _MAX_DEPTH:
        items = list(value)  # type: ignore[call-overload]
        return {
            "t": "tuple" if type(value) is tuple else "list",
            "items": [encode(item, buffers, depth + 1) for item in items[:_MAX_ITEMS]],
            "length": len(items),
        }
    if type(value) is dict and depth < _MAX_DEPTH and len(value) <= _MAX_ITEMS:
        pairs = list(value.items())  # an exact dict: none of the student's methods runs
        if all(map(_is_key, [key for key, _ in pairs])):
            return {
                "t": "dict",
                "items": [[key, encode(item, buffers, depth + 1)] for key, item in pairs],
            }
    return {"t": "object", "type": _type_name(value), "repr": _safe_repr(value)}


def _encode_array(value: object, array: np.ndarray, buffers: list[bytes]) -> dict[str, Any]:
    """An array (`value`, or `array`, its plain ndarray view) as a tree and a raw buffer."""
    kind = array.dtype.kind
    if kind in "biuf" and array.ndim <= _MAX_DIMS:
        if kind == "b":
            array = array.astype("|b1")
        buffers.append(array.tobytes())
        return {
            "t": "array",
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "buf": len(buffers) - 1,
            "cls": "numpy.ndarray" if type(value) is np.ndarray else _type_name(value),
        }
    return {"t": "object", "type": f"ndarray of dtype {array.dtype}", "repr": ""}


def _is_key(key: object) -> bool:
    """Whether a dict key travels as it is: an exact str that needs no cutting or cleaning,
    or an exact 64-bit int."""
    if type(key) is str:
        return len(key) <= _REPR_CHARS and _SURROGATE.search(key) is None
    return type(key) is int and -_MAX_KEY <= key < _MAX_KEY


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
        number = node.get("v")
        if type(number) is str:
            _expect(number in _NON_FINITE, "bad float")
            return _NON_FINITE[number]
        if type(number) is int and abs(number) < 1 << 1023:  # a float that JSON wrote as 2
            return float(number)
        _expect(type(number) is float, "bad float")
        assert isinstance(number, float)
        return number
    if kind == "str":
        _expect(type(node.get("v")) is str, "bad str")
        return clean_text(node["v"][:_REPR_CHARS])
    if kind == "array":
        return _decode_array(node, buffers)
    if kind in ("tuple", "list"):
        items = node.get("items")
        _expect(isinstance(items, list) and len(items) <= _MAX_ITEMS, "bad sequence")
        assert isinstance(items, list)
        decoded = [decode(item, buffers, depth + 1) for item in items]
        return tuple(decoded) if kind == "tuple" else decoded
    if kind == "dict":
        return _decode_dict(node, buffers, depth)
    if kind == "object":
        type_name, text = node.get("type"), node.get("repr", "")
        _expect(type(type_name) is str and type(text) is str, "bad object")
        assert type(type_name) is str and type(text) is str
        return Opaque(clean_text(type_name[:_REPR_CHARS]), clean_text(text[:_REPR_CHARS]))
    raise WireError(f"unknown value kind {kind!r}")


def _decode_dict(node: dict[str, Any], buffers: list[bytes], depth: int) -> dict[object, object]:
    """A dict from its entries, [key, value] each: keys a str or a 64-bit int, none repeated."""
    items = node.get("items")
    _expect(isinstance(items, list) and len(items) <= _MAX_ITEMS, "bad dict")
    assert isinstance(items, list)
    found: dict[object, object] = {}
    for item in items:
        _expect(isinstance(item, list) and len(item) == 2, "a dict entry is not a [key, value]")
        key, value = item
        if type(key) is str and len(key) <= _REPR_CHARS:
            key = clean_text(key)
        elif not (type(key) is int and -_MAX_KEY <= key < _MAX_KEY):
            raise WireError(
                f"dict key {_safe_repr(key)[:40]} is not a str of at most {_REPR_CHARS} "
                "characters or a 64-bit int"
            )
        if key in found:
            raise WireError(f"dict key {_safe_repr(key)[:40]} is repeated")
        found[key] = decode(value, buffers, depth + 1)
    return found


def _decode_array(node: dict[str, Any], buffers: list[bytes]) -> np.ndarray:
    # Checks as plain `if`s: a message is only formatted for a value that is refused.
    dtype_text, shape, index = node.get("dtype"), node.get("shape"), node.get("buf")
    dtype = _DTYPES.get(dtype_text) if type(dtype_text) is str else None
    if dtype is None:
        raise WireError(f"dtype {str(dtype_text)[:40]!r} is not a real number or bool")
    if not (
        type(shape) is list
        and len(shape) <= _MAX_DIMS
        and all(type(n) is int and 0 <= n <= _MAX_DIM for n in shape)
    ):
        raise WireError(
            f"shape {str(shape)[:60]} is not a list of at most {_MAX_DIMS} sizes from 0 to 2**48"
        )
    if not (type(index) is int and 0 <= index < len(buffers)):
        raise WireError("bad buffer index")
    raw = buffers[index]
    size = math.prod(shape)  # exact: a product that would wrap in int64 cannot match the bytes
    if size * dtype.itemsize != len(raw):
        raise WireError(
            f"shape {shape} of {dtype.str} needs {size * dtype.itemsize} bytes, got {len(raw)}"
        )
    try:
        array: np.ndarray = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    except (ValueError, TypeError, OverflowError, MemoryError) as error:
        raise WireError(f"shape {shape} of {dtype.str} cannot be built ({error})") from None
    return array


def frame(header: dict[str, Any], buffers: Sequence[bytes] = ()) -> bytes:
    """One frame's bytes: the header (with the buffer lengths added) and the raw buffers."""
    header = dict(header, lengths=[len(b) for b in buffers])
    data = _ENCODER.encode(header).encode()
    return b"".join([_LENGTH.pack(len(data)), data, *buffers])


def send_frame(sock: socket.socket, header: dict[str, Any], buffers: Sequence[bytes] = ()) -> None:
    """Write one frame (`frame`)."""
    sock.sendall(frame(header, buffers))


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    if size <= 0:
        return b""
    chunk = sock.recv(min(size, 1 << 20))  # one frame part usually arrives in one piece
    if len(chunk) == size:
        return chunk
    chunks = bytearray(chunk)
    while chunk and len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        chunks += chunk
    if len(chunks) < size:
        raise EOFError("the other side closed the connection")
    return bytes(chunks)


def recv_frame(
    sock: socket.socket,
    *,
    max_header: int = 1 << 20,
    max_total: int = 1 << 28,
    hasher: Any = None,
) -> tuple[dict[str, Any], list[bytes]]:
    """Read one frame; raises `WireError` for malformed or oversized ones, `EOFError` at end.

    A `hasher` (a `hashlib` object) is fed the whole frame, as it came."""
    prefix = _recv_exactly(sock, _LENGTH.size)
    (length,) = _LENGTH.unpack(prefix)
    if not 0 < length <= max_header:
        raise WireError(f"header of {length} bytes is out of bounds")
    raw = _recv_exactly(sock, length)
    if hasher is not None:
        hasher.update(prefix + raw)  # the header's length too: where the buffers begin
    try:
        header = _DECODER.decode(raw.decode("utf-8"))
        if _SURROGATE_ESCAPE.search(raw):
            header = _clean_tree(header)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise WireError(f"header is not strict UTF-8 JSON: {str(error)[:200]}") from None
    _expect(isinstance(header, dict), "header is not an object")
    lengths = header.get("lengths", [])
    _expect(
        isinstance(lengths, list)
        and len(lengths) <= _MAX_BUFFERS
        and all(type(n) is int and 0 <= n <= max_total for n in lengths),
        "bad buffer lengths",
    )
    total = sum(lengths)
    _expect(total <= max_total, "buffers exceed the size limit")
    if len(lengths) < 2 or total > _TOGETHER:
        buffers = [_recv_exactly(sock, n) for n in lengths]
        if hasher is not None:
            for buffer in buffers:
                hasher.update(buffer)
        return header, buffers
    together = _recv_exactly(sock, total)  # small buffers in one read, then cut apart
    if hasher is not None:
        hasher.update(together)
    buffers, start = [], 0
    for n in lengths:
        buffers.append(together[start : start + n])
        start += n
    return header, buffers


def _not_json(constant: str) -> Any:
    raise WireError(f"header holds {constant}, which strict JSON does not allow")


# Made once: `json.dumps`/`json.loads` with options build a new encoder or decoder every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_not_json)
