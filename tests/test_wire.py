"""The wire: values round-trip, and anything malformed or unsafe is refused."""

from __future__ import annotations

import json
import socket
import struct

import numpy as np
import pytest

from autograder.wire import Opaque, WireError, decode, encode, recv_frame, send_frame


def roundtrip(value: object) -> object:
    buffers: list[bytes] = []
    node = json.loads(json.dumps(encode(value, buffers)))
    return decode(node, buffers)


@pytest.mark.parametrize(
    "value",
    [
        np.arange(6.0).reshape(2, 3),
        np.arange(4, dtype=np.float32),
        np.array([True, False]),
        np.array(3.5),
        np.zeros((0, 3)),
        np.arange(12).reshape(3, 4)[:, ::2],
    ],
    ids=["float64", "float32", "bool", "0-d", "empty", "non-contiguous"],
)
def test_arrays_round_trip(value: np.ndarray) -> None:
    got = roundtrip(value)
    assert isinstance(got, np.ndarray)
    assert got.dtype == value.dtype and got.shape == value.shape
    assert np.array_equal(got, value)


@pytest.mark.parametrize(
    "value",
    [None, True, 3, 2.5, "text", (1, 2.0), [None, "x"]],
    ids=["none", "bool", "int", "float", "str", "tuple", "list"],
)
def test_plain_values_round_trip(value: object) -> None:
    assert roundtrip(value) == value


def test_numpy_scalar_becomes_0d_array() -> None:
    got = roundtrip(np.float64(1.5))
    assert isinstance(got, np.ndarray) and got.shape == () and got == 1.5


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (np.array([1 + 2j]), "ndarray of dtype complex128"),
        (np.array([object()], dtype=object), "ndarray of dtype object"),
        ({"a": 1}, "dict"),
        (object(), "object"),
    ],
    ids=["complex", "object-array", "dict", "object"],
)
def test_non_data_values_travel_as_opaque(value: object, type_name: str) -> None:
    got = roundtrip(value)
    assert isinstance(got, Opaque) and got.type_name == type_name


class _Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("boom")


def test_hostile_repr_does_not_break_encoding() -> None:
    got = roundtrip(_Hostile())
    assert isinstance(got, Opaque) and got.repr == "<unprintable>"


ARRAY = {"t": "array", "dtype": "<f8", "shape": [2], "buf": 0}


@pytest.mark.parametrize(
    ("node", "buffers"),
    [
        ({**ARRAY, "dtype": "|O"}, [b"\0" * 16]),
        ({**ARRAY, "dtype": "<c16"}, [b"\0" * 32]),
        ({**ARRAY, "dtype": "[('a', '<f8')]"}, [b"\0" * 16]),
        ({**ARRAY, "shape": [3]}, [b"\0" * 16]),
        ({**ARRAY, "shape": [-2]}, [b"\0" * 16]),
        ({**ARRAY, "shape": [1] * 9}, [b"\0" * 8]),
        ({**ARRAY, "buf": 1}, [b"\0" * 16]),
        ({"t": "pickle", "v": "cos\nsystem\n"}, []),
        ({"t": "int", "v": "3"}, []),
        ("not an object", []),
    ],
    ids=[
        "object-dtype",
        "complex-dtype",
        "structured-dtype",
        "size-mismatch",
        "negative-shape",
        "too-many-dims",
        "bad-buffer-index",
        "unknown-kind",
        "int-as-string",
        "not-a-dict",
    ],
)
def test_decode_refuses_malformed_values(node: object, buffers: list[bytes]) -> None:
    with pytest.raises(WireError):
        decode(node, buffers)


def test_frames_round_trip_over_a_socket() -> None:
    left, right = socket.socketpair()
    with left, right:
        send_frame(left, {"op": "x"}, [b"abc", b""])
        header, buffers = recv_frame(right)
    assert header["op"] == "x" and buffers == [b"abc", b""]


@pytest.mark.parametrize(
    "raw",
    [
        struct.pack("!I", 0),
        struct.pack("!I", 1 << 30),
        struct.pack("!I", 5) + b"nope!",
        struct.pack("!I", 2) + b"[]",
        struct.pack("!I", 25) + b'{"lengths":[1073741824]} ',
    ],
    ids=["empty-header", "huge-header", "not-json", "not-an-object", "huge-buffers"],
)
def test_recv_refuses_bad_frames(raw: bytes) -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(raw)
        with pytest.raises(WireError):
            recv_frame(right, max_total=1 << 20)


def test_recv_reports_end_of_stream() -> None:
    left, right = socket.socketpair()
    with right:
        left.sendall(struct.pack("!I", 10) + b"{")
        left.close()
        with pytest.raises(EOFError):
            recv_frame(right)
