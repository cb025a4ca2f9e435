"""The wire: values round-trip, and anything malformed or unsafe is refused."""

from __future__ import annotations

import collections
import hashlib
import json
import socket
import struct
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autograder.sandbox.wire import (
    Opaque,
    WireError,
    clean_text,
    decode,
    encode,
    recv_frame,
    send_frame,
)


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
    [None, True, 3, 2.5, "text", (1, 2.0), [None, "x"], float("inf"), float("-inf")],
    ids=["none", "bool", "int", "float", "str", "tuple", "list", "inf", "-inf"],
)
def test_plain_values_round_trip(value: object) -> None:
    assert roundtrip(value) == value


def test_nan_travels_as_strict_json() -> None:
    buffers: list[bytes] = []
    text = json.dumps(encode((float("nan"), 1.0), buffers), allow_nan=False)
    got = decode(json.loads(text), buffers)
    assert isinstance(got, tuple) and got[0] != got[0] and got[1] == 1.0


def test_numpy_scalar_becomes_0d_array() -> None:
    got = roundtrip(np.float64(1.5))
    assert isinstance(got, np.ndarray) and got.shape == () and got == 1.5


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (np.array([1 + 2j]), "ndarray of dtype complex128"),
        (np.array([object()], dtype=object), "ndarray of dtype object"),
        (object(), "object"),
    ],
    ids=["complex", "object-array", "object"],
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


def same(got: object, expected: object) -> bool:
    """Whether `got` is `expected`: the same types all the way down, arrays of the same dtype,
    shape and values, dicts with the same keys in the same order."""
    if type(got) is not type(expected):
        return False
    if isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray)
        return got.dtype == expected.dtype and np.array_equal(got, expected)
    if isinstance(expected, dict):
        assert isinstance(got, dict)
        return list(got) == list(expected) and all(same(got[k], v) for k, v in expected.items())
    if isinstance(expected, (tuple, list)):
        assert isinstance(got, (tuple, list))
        return len(got) == len(expected) and all(map(same, got, expected))
    return got == expected


def nested_dicts(depth: int) -> dict[str, object]:
    """{"a": {"a": ... {"a": 1}}}, `depth` dicts deep."""
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"k": np.arange(6.0).reshape(2, 3), "v": np.zeros(2, dtype=np.float32)},
        {0: "zero", -5: "minus five", (1 << 63) - 1: "largest"},
        {"1": "the string", 1: "the int"},
        {"cache": {"k": np.ones((1, 2)), "v": np.zeros((1, 2))}, "seq_len": 1},
        {"pair": (1, 2.0), "list": [None, True], "inf": float("inf"), "text": "x"},
        [{"a": 1}, ({"b": np.array([True])},)],
        {"b": 1, "a": 2, "c": 3},
        {str(index): index for index in range(256)},
        {"ключ \U0001f511": 1, "k" * 300: 2},
        nested_dicts(6),
    ],
    ids=[
        "empty",
        "str-keys-of-arrays",
        "int-keys",
        "str-and-int-keys-stay-apart",
        "nested",
        "sequences-and-scalars",
        "inside-a-list-and-a-tuple",
        "order-kept",
        "256-entries",
        "unicode-and-300-character-keys",
        "6-deep",
    ],
)
def test_dicts_round_trip(value: object) -> None:
    got = roundtrip(value)
    assert same(got, value), got


class _LyingDict(dict):  # type: ignore[type-arg]
    """A dict whose every method lies or raises, and which claims to be a plain dict."""

    __class__ = property(lambda self: dict)

    def items(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("items")

    def keys(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("keys")

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("iter")

    def __len__(self) -> int:
        return 0

    def __getitem__(self, key: object) -> object:
        return "forged"

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:  # type: ignore[override]
        raise RuntimeError("hash")

    def __repr__(self) -> str:
        raise RuntimeError("repr")


class _SneakyStr(str):
    """A str key equal to everything, whose repr raises."""

    __hash__ = str.__hash__

    def __eq__(self, other: object) -> bool:
        return True

    def __repr__(self) -> str:
        raise RuntimeError("repr")


class _SneakyInt(int):
    """An int key equal to everything."""

    __hash__ = int.__hash__

    def __eq__(self, other: object) -> bool:
        return True


@pytest.mark.parametrize(
    ("value", "type_name", "text"),
    [
        (collections.OrderedDict(a=1), "collections.OrderedDict", "OrderedDict("),
        (collections.defaultdict(list, a=[1]), "collections.defaultdict", "defaultdict("),
        (collections.Counter("aab"), "collections.Counter", "Counter({'a': 2, 'b': 1})"),
        (_LyingDict(a=1), "_LyingDict", "<unprintable>"),
        ({(1, 2): 3}, "dict", "{(1, 2): 3}"),
        ({1.5: 1}, "dict", "{1.5: 1}"),
        ({True: 1}, "dict", "{True: 1}"),
        ({None: 1}, "dict", "{None: 1}"),
        ({_SneakyStr("k"): 1}, "dict", "<unprintable>"),
        ({_SneakyInt(1): 1}, "dict", "{1: 1}"),
        ({"k" * 301: 1}, "dict", "{'kkk"),
        ({"\ud800": 1}, "dict", r"{'\ud800': 1}"),
        ({1 << 63: 1}, "dict", "{9223372036854775808: 1}"),
        ({-(1 << 63) - 1: 1}, "dict", "{-9223372036854775809: 1}"),
        ({str(index): index for index in range(257)}, "dict", "{'0': 0, '1': 1"),
    ],
    ids=[
        "ordered-dict",
        "defaultdict",
        "counter",
        "subclass-with-lying-methods",
        "tuple-key",
        "float-key",
        "bool-key",
        "none-key",
        "str-subclass-key",
        "int-subclass-key",
        "key-of-301-characters",
        "key-with-a-lone-surrogate",
        "key-beyond-64-bits",
        "key-below-64-bits",
        "257-entries",
    ],
)
def test_dicts_the_wire_does_not_carry_travel_as_opaque(
    value: dict[object, object], type_name: str, text: str
) -> None:
    got = roundtrip(value)
    assert isinstance(got, Opaque), got
    assert got.type_name.endswith(type_name) and got.repr.startswith(text), got


def test_a_dict_too_deep_ends_in_an_opaque_dict() -> None:
    got = roundtrip(nested_dicts(7))
    for _ in range(6):
        assert isinstance(got, dict) and list(got) == ["a"]
        got = got["a"]
    assert got == Opaque("dict", "{'a': 1}")


def test_values_of_a_dict_are_encoded_like_any_other() -> None:
    got = roundtrip({"f": _Hostile(), "c": 1 + 2j, "a": np.array([1 + 2j])})
    assert isinstance(got, dict) and list(got) == ["f", "c", "a"]
    assert isinstance(got["f"], Opaque) and got["f"].type_name.endswith("_Hostile")
    assert got["f"].repr == "<unprintable>"
    assert got["c"] == Opaque("complex", "(1+2j)")
    assert got["a"] == Opaque("ndarray of dtype complex128", "")


NONE: dict[str, object] = {"t": "none"}


def forged_nested(depth: int) -> dict[str, object]:
    """A dict node holding a dict node ... `depth` deep, with None inside."""
    node: dict[str, object] = NONE
    for _ in range(depth):
        node = {"t": "dict", "items": [["a", node]]}
    return node


def test_a_dict_node_as_deep_as_the_encoder_sends_is_accepted() -> None:
    expected: object = None
    for _ in range(6):
        expected = {"a": expected}
    assert decode(forged_nested(6), []) == expected


FORGED_DICTS = {
    "no-items": {"t": "dict"},
    "items-a-string": {"t": "dict", "items": "ab"},
    "items-an-object": {"t": "dict", "items": {"a": NONE}},
    "entry-of-one": {"t": "dict", "items": [["a"]]},
    "entry-of-three": {"t": "dict", "items": [["a", NONE, NONE]]},
    "entry-an-object": {"t": "dict", "items": [{"a": NONE}]},
    "float-key": {"t": "dict", "items": [[1.5, NONE]]},
    "bool-key": {"t": "dict", "items": [[True, NONE]]},
    "null-key": {"t": "dict", "items": [[None, NONE]]},
    "list-key": {"t": "dict", "items": [[["a"], NONE]]},
    "node-as-key": {"t": "dict", "items": [[{"t": "str", "v": "a"}, NONE]]},
    "key-of-301-characters": {"t": "dict", "items": [["k" * 301, NONE]]},
    "key-beyond-64-bits": {"t": "dict", "items": [[1 << 63, NONE]]},
    "key-of-5000-digits": {"t": "dict", "items": [[10**5000, NONE]]},
    "repeated-key": {"t": "dict", "items": [["a", NONE], ["a", {"t": "int", "v": 1}]]},
    "repeated-int-key": {"t": "dict", "items": [[7, NONE], [7, NONE]]},
    "repeated-once-cleaned": {"t": "dict", "items": [["\ud800", NONE], ["\udfff", NONE]]},
    "value-not-a-node": {"t": "dict", "items": [["a", "x"]]},
    "value-malformed": {"t": "dict", "items": [["a", {"t": "int", "v": "3"}]]},
    "value-array-without-buffer": {
        "t": "dict",
        "items": [["a", {"t": "array", "dtype": "<f8", "shape": [1], "buf": 3}]],
    },
    "257-entries": {"t": "dict", "items": [[str(i), NONE] for i in range(257)]},
    "7-deep": forged_nested(7),
}


@pytest.mark.parametrize("node", list(FORGED_DICTS.values()), ids=list(FORGED_DICTS))
def test_decode_refuses_forged_dicts(node: object) -> None:
    with pytest.raises(WireError):
        decode(node, [b"\0" * 8])


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (FORGED_DICTS["float-key"], "dict key 1.5 is not a str of at most 300 characters"),
        (FORGED_DICTS["key-of-5000-digits"], "dict key <unprintable> is not a str"),
        (FORGED_DICTS["repeated-key"], "dict key 'a' is repeated"),
        (FORGED_DICTS["repeated-once-cleaned"], "dict key '\ufffd' is repeated"),
        (FORGED_DICTS["entry-of-three"], "a dict entry is not a \\[key, value\\]"),
    ],
    ids=["float-key", "key-of-5000-digits", "repeated-key", "repeated-once-cleaned", "entry"],
)
def test_forged_dict_errors_name_the_key(node: object, message: str) -> None:
    with pytest.raises(WireError, match=message):
        decode(node, [])


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
        # dtype strings a pattern like [biuf](1|2|4|8|16) allows but NumPy rejects
        ({**ARRAY, "dtype": "f1"}, [b"\0" * 2]),
        ({**ARRAY, "dtype": "<b2"}, [b"\0" * 4]),
        ({**ARRAY, "dtype": "i16"}, [b"\0" * 32]),
        ({**ARRAY, "dtype": "u16"}, [b"\0" * 32]),
        ({**ARRAY, "dtype": "b8"}, [b"\0" * 16]),
        ({**ARRAY, "dtype": 8}, [b"\0" * 16]),
        ({**ARRAY, "dtype": "f8 "}, [b"\0" * 16]),
        # shapes whose product overflows int64 (and wraps to 0, matching an empty buffer)
        ({**ARRAY, "shape": [1 << 32, 1 << 32]}, [b""]),
        ({**ARRAY, "shape": [1 << 62, 4]}, [b""]),
        ({**ARRAY, "shape": [0, 1 << 62]}, [b""]),
        ({**ARRAY, "shape": [10**40]}, [b""]),
        ({**ARRAY, "shape": [True, True]}, [b"\0" * 8]),
        ({**ARRAY, "shape": [2.0]}, [b"\0" * 16]),
        ({**ARRAY, "shape": "2"}, [b"\0" * 16]),
        ({**ARRAY, "buf": True}, [b"\0" * 16]),
        ({"t": "float", "v": 10**400}, []),
        ({"t": "float", "v": "NaN"}, []),
        ({"t": "float", "v": None}, []),
        ({"t": "bool", "v": 1}, []),
        ({"t": "str", "v": 3}, []),
        ({"t": "object", "type": ["list"], "repr": ""}, []),
        ({"t": "list", "items": [{"t": "none"}] * 257}, []),
        ({"t": "list", "items": "abc"}, []),
        (
            {
                "t": "list",
                "items": [
                    {
                        "t": "list",
                        "items": [
                            {
                                "t": "list",
                                "items": [
                                    {
                                        "t": "list",
                                        "items": [
                                            {
                                                "t": "list",
                                                "items": [
                                                    {
                                                        "t": "list",
                                                        "items": [
                                                            {"t": "list", "items": [{"t": "none"}]}
                                                        ],
                                                    }
                                                ],
                                            }
                                        ],
                                    }
                                ],
                            }
                        ],
                    }
                ],
            },
            [],
        ),
        ({"v": 1}, []),
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
        "dtype-f1",
        "dtype-b2",
        "dtype-i16",
        "dtype-u16",
        "dtype-b8",
        "dtype-not-a-string",
        "dtype-trailing-space",
        "shape-wraps-to-0",
        "shape-overflows-int64",
        "shape-zero-times-huge",
        "shape-beyond-int64",
        "shape-of-bools",
        "shape-of-floats",
        "shape-not-a-list",
        "buffer-index-bool",
        "float-too-large",
        "float-unknown-name",
        "float-null",
        "bool-as-int",
        "str-as-int",
        "opaque-type-not-str",
        "too-many-items",
        "items-not-a-list",
        "too-deep",
        "no-kind",
    ],
)
def test_decode_refuses_malformed_values(node: object, buffers: list[bytes]) -> None:
    with pytest.raises(WireError):
        decode(node, buffers)


def test_forged_dtype_and_shape_errors_name_the_value() -> None:
    with pytest.raises(WireError, match="dtype 'f1' is not a real number or bool"):
        decode({**ARRAY, "dtype": "f1"}, [b"\0" * 2])
    with pytest.raises(WireError, match=r"needs 147573952589676412928 bytes, got 0"):
        decode({**ARRAY, "shape": [1 << 32, 1 << 32]}, [b""])


def test_lone_surrogates_in_strings_become_replacement_characters() -> None:
    got = decode({"t": "object", "type": "X\ud800", "repr": "\udfff!"}, [])
    assert isinstance(got, Opaque) and (got.type_name, got.repr) == ("X\ufffd", "\ufffd!")
    assert decode({"t": "str", "v": "a\udc80b"}, []) == "a\ufffdb"
    assert clean_text("\U0001f600 ok") == "\U0001f600 ok"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["t", "v", "dtype", "shape", "buf", "items", "type", "repr"]), inner
        )
    ),
    max_leaves=20,
)
_NODE = st.fixed_dictionaries(
    {
        "t": st.sampled_from(
            ["none", "bool", "int", "float", "str", "array", "list", "dict", "object"]
        )
    },
    optional={
        "v": _JSON,
        "dtype": st.sampled_from(["<f8", "f1", "|b1", "<i16", "O"]) | _JSON,
        "shape": st.lists(st.integers(min_value=-2, max_value=1 << 64), max_size=4) | _JSON,
        "buf": st.integers(-1, 2) | _JSON,
        "items": st.lists(_JSON, max_size=3)
        | st.lists(st.lists(st.text(max_size=2) | st.integers() | _JSON, max_size=3), max_size=3)
        | _JSON,
        "type": _JSON,
        "repr": _JSON,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(node=_NODE | _JSON, buffers=st.lists(st.binary(max_size=16), max_size=3))
def test_decode_raises_only_wire_errors_whatever_it_is_given(
    node: object, buffers: list[bytes]
) -> None:
    try:
        value = decode(node, buffers)
    except WireError:
        return
    assert value is None or isinstance(
        value, (bool, int, float, str, tuple, list, dict, np.ndarray, Opaque)
    )


FRAMES = [  # id, buffers, bytes per write (0: the whole frame at once)
    ("none", [], 0),
    ("one", [b"abc"], 0),
    ("small-ones-read-together", [b"abc", b"", b"defg" * 100], 0),
    ("large-ones-read-one-by-one", [b"a" * (3 << 19), b"", b"b" * (1 << 20)], 0),
    ("dribbled-a-byte-at-a-time", [b"abc", b"", b"xyz"], 1),
    ("dribbled-in-odd-pieces", [b"q" * 5000, b"r" * 7], 997),
]


@pytest.mark.parametrize(("buffers", "piece"), [f[1:] for f in FRAMES], ids=[f[0] for f in FRAMES])
def test_frames_round_trip_over_a_socket(buffers: list[bytes], piece: int) -> None:
    """Every buffer comes back whole and in order, however the bytes arrive."""
    left, right = socket.socketpair()
    sender, written = socket.socketpair()
    with left, right, sender, written:
        chunks: list[bytes] = []
        reader = threading.Thread(  # the frame's bytes as send_frame writes them
            target=lambda: chunks.extend(iter(lambda: written.recv(1 << 16), b""))
        )
        reader.start()
        send_frame(sender, {"op": "x"}, buffers)
        sender.close()
        reader.join()
        raw = b"".join(chunks)

        def write() -> None:
            step = piece or len(raw)
            for start in range(0, len(raw), step):
                left.sendall(raw[start : start + step])

        writer = threading.Thread(target=write)
        writer.start()
        header, received = recv_frame(right)
        writer.join()
    assert header["op"] == "x" and received == buffers
    digest = hashlib.sha256()
    left, right = socket.socketpair()
    with left, right:
        writer = threading.Thread(target=lambda: left.sendall(raw))
        writer.start()
        recv_frame(right, hasher=digest)
        writer.join()
    assert digest.digest() == hashlib.sha256(raw).digest()  # the frame, exactly as it came


def test_a_frame_cut_short_is_the_end_of_the_connection() -> None:
    left, right = socket.socketpair()
    with right:
        with left:
            send_frame(left, {"op": "x"}, [b"abc", b"def"])
            raw = right.recv(1 << 16)
        cut, again = socket.socketpair()
        with cut, again:
            cut.sendall(raw[:-2])
            cut.close()
            with pytest.raises(EOFError):
                recv_frame(again)


@pytest.mark.parametrize(
    "raw",
    [
        struct.pack("!I", 0),
        struct.pack("!I", 1 << 30),
        struct.pack("!I", 5) + b"nope!",
        struct.pack("!I", 2) + b"[]",
        struct.pack("!I", 25) + b'{"lengths":[1073741824]} ',
        *(
            struct.pack("!I", len(body)) + body
            for body in [
                b'{"a": "\xff"}',
                '{"a": 1}'.encode("utf-16"),
                '{"a": 1}'.encode("utf-32"),
                b'{"a": NaN}',
                b'{"a": Infinity}',
                b'{"a": [-Infinity]}',
                b"[" * 200_000 + b"]" * 200_000,
                b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                b'{"a": ' + b"9" * 5000 + b"}",
                b'{"lengths": [-1]}',
                b'{"lengths": [true]}',
                b'{"lengths": [1.5]}',
                b'{"lengths": 4}',
                b'{"lengths": [' + str(1 << 70).encode() + b"]}",
                b'{"lengths": [' + b",".join([b"0"] * 20_000) + b"]}",
            ]
        ),
    ],
    ids=[
        "empty-header",
        "huge-header",
        "not-json",
        "not-an-object",
        "huge-buffers",
        "not-utf8",
        "utf16-json",
        "utf32-json",
        "nan",
        "infinity",
        "minus-infinity",
        "nested-lists-200000-deep",
        "nested-objects-100000-deep",
        "int-of-5000-digits",
        "negative-length",
        "bool-length",
        "float-length",
        "lengths-not-a-list",
        "length-beyond-int64",
        "too-many-buffers",
    ],
)
def test_recv_refuses_bad_frames(raw: bytes) -> None:
    left, right = socket.socketpair()
    with left, right:
        left.setblocking(False)
        sender = threading.Thread(target=_send_all, args=(left, raw))
        sender.start()
        try:
            with pytest.raises(WireError):
                recv_frame(right, max_total=1 << 20)
        finally:
            right.close()
            sender.join()


def _send_all(sock: socket.socket, raw: bytes) -> None:
    sock.setblocking(True)
    try:
        sock.sendall(raw)
    except OSError:  # the reader gave up early and closed its end
        pass


def test_lone_surrogates_in_a_header_arrive_as_valid_unicode() -> None:
    left, right = socket.socketpair()
    with left, right:
        send_frame(left, {"error": {"message": "\ud800 boom", "\udfff": ["x\udc00"]}})
        header, _ = recv_frame(right)
    assert header["error"] == {"message": "\ufffd boom", "\ufffd": ["x\ufffd"]}
    json.dumps(header, ensure_ascii=False).encode("utf-8")  # no UnicodeEncodeError


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=64) | _JSON.map(lambda tree: json.dumps(tree).encode()))
def test_recv_raises_only_wire_errors_for_any_header(body: bytes) -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(struct.pack("!I", len(body)) + body)
        left.shutdown(socket.SHUT_WR)
        try:
            header, _ = recv_frame(right, max_total=1 << 10)
        except (WireError, EOFError):
            return
    assert isinstance(header, dict)


def test_recv_reports_end_of_stream() -> None:
    left, right = socket.socketpair()
    with right:
        left.sendall(struct.pack("!I", 10) + b"{")
        left.close()
        with pytest.raises(EOFError):
            recv_frame(right)
