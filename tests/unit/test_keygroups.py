"""state.keygroups: stable key -> key group -> subtask mapping (SEMANTICS.md, "Keys and key groups")."""

from __future__ import annotations

import enum
import struct
import zlib
from collections import namedtuple

import pytest

from state.keygroups import (
    UnhashableKeyError,
    channel_table,
    key_bytes,
    key_group_for,
    key_group_range,
    operator_index_for_key_group,
)
from weir.common import Row


def crc_group(data: bytes, max_parallelism: int) -> int:
    return zlib.crc32(data) % max_parallelism


def test_crc32_anchor_value():
    # CRC-32 (IEEE) of b"hello" is the well-known 0x3610A686: the hash weir relies on is the standard one,
    # whatever PYTHONHASHSEED says (Python's hash("hello") changes from process to process).
    assert zlib.crc32(b"hello") == 0x3610A686
    assert key_group_for("hello", 128) == 0x86 % 128 == 6
    assert key_group_for("hello", 1 << 16) == 0xA686


@pytest.mark.parametrize("max_par", [1, 7, 128, 1000, 32768])
def test_str_key_group_is_crc32_of_utf8(max_par):
    for s in ["", "a", "user-42", "ünïcödé", "日本語", "x" * 1000]:
        g = key_group_for(s, max_par)
        assert g == crc_group(s.encode("utf-8"), max_par)
        assert 0 <= g < max_par
        assert key_bytes(s) == s.encode("utf-8")


@pytest.mark.parametrize("max_par", [7, 128, 4096])
def test_int_key_group_uses_documented_encoding(max_par):
    for i in [0, 1, -1, 42, 2**31, -(2**63), 10**30]:
        expected = crc_group(b"i" + str(i).encode("ascii"), max_par)
        assert key_group_for(i, max_par) == expected
        assert key_bytes(i) == b"i" + str(i).encode("ascii")


def test_other_scalar_encodings():
    assert key_bytes(None) == b"n"
    assert key_bytes(True) == b"i1" and key_bytes(False) == b"i0"
    assert key_bytes(b"\x00ab") == b"b\x00ab"
    assert key_bytes(1.5) == b"f" + struct.pack("<d", 1.5)
    assert key_group_for(1.5, 128) == crc_group(b"f" + struct.pack("<d", 1.5), 128)
    assert key_group_for(b"raw", 128) == crc_group(b"braw", 128)
    assert key_group_for(None, 128) == crc_group(b"n", 128)


def test_tuple_encoding_and_group():
    key = ("a", 1, (2.5, None))
    inner = b"t" + key_bytes(2.5) + b"\x00" + b"n" + b"\x01"
    expected = b"t" + b"a" + b"\x00" + b"i1" + b"\x00" + inner + b"\x01"
    assert key_bytes(key) == expected
    assert key_group_for(key, 128) == crc_group(expected, 128)


def test_key_group_for_is_deterministic_across_calls():
    keys = ["k", 3, ("a", 1), Row(1, "x"), 2.25, b"b", None, False]
    first = [key_group_for(k, 128) for k in keys]
    for _ in range(3):
        assert [key_group_for(k, 128) for k in keys] == first


def test_equal_numeric_keys_share_a_group():
    for mp in (2, 128, 32768):
        assert key_group_for(1, mp) == key_group_for(1.0, mp)
        assert key_group_for(-3, mp) == key_group_for(-3.0, mp)
        assert key_group_for(0, mp) == key_group_for(-0.0, mp)
        assert key_group_for(10**20, mp) == key_group_for(1e20, mp)
        assert key_group_for((1, "a"), mp) == key_group_for((1.0, "a"), mp)


def test_row_key_same_group_as_tuple_of_its_values():
    positional = Row(1, "x", 2.5)
    named = Row(id=1, name="x", score=2.5)
    t = (1, "x", 2.5)
    for mp in (128, 1000):
        assert key_group_for(positional, mp) == key_group_for(t, mp)
        assert key_group_for(named, mp) == key_group_for(t, mp)


def test_subclasses_of_supported_types_encode_as_their_base():
    class Color(enum.IntEnum):
        RED = 5

    Point = namedtuple("Point", "x y")

    class MyStr(str):
        pass

    assert key_group_for(Color.RED, 128) == key_group_for(5, 128)
    assert key_group_for(Point(1, "a"), 128) == key_group_for((1, "a"), 128)
    assert key_group_for(MyStr("abc"), 128) == key_group_for("abc", 128)

    class Region(enum.StrEnum):
        EU = "eu"

    assert key_group_for(Region.EU, 128) == key_group_for("eu", 128)


@pytest.mark.parametrize("bad", [[1, 2], {"a": 1}, {1, 2}, object(), (1, [2]), frozenset({1})])
def test_unhashable_keys_raise_a_helpful_error(bad):
    with pytest.raises(UnhashableKeyError) as ei:
        key_group_for(bad, 128)
    assert isinstance(ei.value, TypeError)
    msg = str(ei.value)
    assert "key" in msg
    inner = bad[1] if isinstance(bad, tuple) else bad
    assert type(inner).__name__ in msg
    assert "tuple" in msg  # suggests what to return instead


def test_bool_keys_share_group_with_equal_ints():
    for mp in (128, 1000, 32768):
        assert key_group_for(True, mp) == key_group_for(1, mp)
        assert key_group_for(False, mp) == key_group_for(0, mp)


def test_str_enum_key_shares_group_with_its_value():
    class Region(str, enum.Enum):  # noqa: UP042 - the pre-3.11 idiom, still common in user code
        EU = "eu"

    assert Region.EU == "eu" and hash(Region.EU) == hash("eu")
    assert key_group_for(Region.EU, 128) == key_group_for("eu", 128)


PAIRS = [
    (1, 1),
    (2, 1),
    (2, 2),
    (7, 3),
    (10, 3),
    (128, 1),
    (128, 2),
    (128, 3),
    (128, 5),
    (128, 7),
    (128, 127),
    (128, 128),
    (129, 4),
    (1000, 13),
    (4096, 17),
]


@pytest.mark.parametrize(("max_par", "par"), PAIRS)
def test_key_group_ranges_partition_all_groups(max_par, par):
    ranges = [key_group_range(max_par, par, i) for i in range(par)]
    assert all(len(r) > 0 for r in ranges)
    # contiguous, in order, covering 0..max_par-1 exactly once
    flat = [g for r in ranges for g in r]
    assert flat == list(range(max_par))
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(("max_par", "par"), PAIRS)
def test_operator_index_consistent_with_ranges_and_table(max_par, par):
    table = channel_table(max_par, par)
    assert len(table) == max_par
    for i in range(par):
        for g in key_group_range(max_par, par, i):
            assert operator_index_for_key_group(g, max_par, par) == i
            assert table[g] == i
            assert g * par // max_par == i  # SEMANTICS.md's formula


def test_keys_route_to_the_subtask_owning_their_group():
    max_par, par = 128, 3
    table = channel_table(max_par, par)
    for k in [f"user-{i}" for i in range(200)] + list(range(200)):
        g = key_group_for(k, max_par)
        owner = table[g]
        assert g in key_group_range(max_par, par, owner)
