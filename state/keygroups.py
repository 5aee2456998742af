"""Keys -> key groups -> subtasks.

A key's key group is a stable hash of a canonical encoding of the key, modulo max parallelism. Python's
``hash()`` of str/bytes is salted per process, so two workers would disagree about where a key lives; we hash
bytes with CRC-32 (zlib, C speed, identical in every process and run) instead. Key group g runs on subtask
``g * parallelism // max_parallelism``, so each subtask owns a contiguous range and state can be redistributed
when parallelism changes.
"""

from __future__ import annotations

import struct
from typing import Any
from zlib import crc32

_pack_double = struct.Struct("<d").pack


class UnhashableKeyError(TypeError):
    """A key selector returned a value that cannot be a key (its hash would not be stable)."""


def key_bytes(key: Any) -> bytes:
    """A canonical, process-independent encoding of a key.

    Supports None, bool, int, float, str, bytes, and tuples and Rows of those (nested).

    Raises:
        UnhashableKeyError: for any other type (lists, dicts, sets, arbitrary objects).
    """
    t = type(key)
    if t is str:
        return key.encode("utf-8", "surrogatepass")  # unprefixed: the hot path in key_group_for hashes this
    if t is int:
        return b"i" + str(key).encode()
    if t is bytes:
        return b"b" + key
    if t is tuple:
        return b"t" + b"\x00".join(key_bytes(k) for k in key) + b"\x01"
    if t is bool:
        return b"i1" if key else b"i0"  # True == 1 in Python: equal keys share a group
    if t is float:
        if key.is_integer():
            return b"i" + str(int(key)).encode()  # 1.0 == 1 in Python: equal keys share a group
        return b"f" + _pack_double(key)
    if key is None:
        return b"n"
    if t.__name__ == "Row" and hasattr(key, "_values"):
        return b"t" + b"\x00".join(key_bytes(k) for k in key._values) + b"\x01"
    # subclasses (str/int enums, namedtuples) hash as the value they compare equal to
    if isinstance(key, str):
        return str.encode(key, "utf-8", "surrogatepass")
    if isinstance(key, int):
        return key_bytes(int.__index__(key))
    if isinstance(key, float):
        return key_bytes(float.__float__(key))
    if isinstance(key, bytes):
        return b"b" + bytes(key)
    if isinstance(key, tuple):
        return key_bytes(tuple(key))
    raise UnhashableKeyError(
        f"a key must be None, bool, int, float, str, bytes or a tuple/Row of those; the key selector "
        f"returned a {t.__name__}: {key!r:.80}. Return e.g. a tuple instead of a list."
    )


def key_group_for(key: Any, max_parallelism: int) -> int:
    """The key group of ``key`` (stable across processes and runs)."""
    t = type(key)
    if t is str:  # hot path: most keys are strings or ints
        return crc32(key.encode("utf-8", "surrogatepass")) % max_parallelism
    if t is int:
        return crc32(b"i%d" % key) % max_parallelism
    return crc32(key_bytes(key)) % max_parallelism


def operator_index_for_key_group(key_group: int, max_parallelism: int, parallelism: int) -> int:
    """The subtask that owns ``key_group``."""
    return key_group * parallelism // max_parallelism


def key_group_range(max_parallelism: int, parallelism: int, operator_index: int) -> range:
    """The contiguous key groups owned by subtask ``operator_index`` (Flink's KeyGroupRangeAssignment)."""
    start = (operator_index * max_parallelism + parallelism - 1) // parallelism
    end = ((operator_index + 1) * max_parallelism - 1) // parallelism
    return range(start, end + 1)


def channel_table(max_parallelism: int, parallelism: int) -> list[int]:
    """key group -> subtask, precomputed so the partitioner does one list lookup per record."""
    return [operator_index_for_key_group(g, max_parallelism, parallelism) for g in range(max_parallelism)]
