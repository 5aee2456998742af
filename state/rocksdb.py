"""RocksDB keyed state backend: one rocksdict database per operator instance, on the slot's local disk.

Layout. Each state table is a column family (``s.<name>``); the default column family holds the max parallelism
and one small record per state handle (its kind and whether TTL is on), so a reopened database refuses to be read
with other key groups or as another kind of state. A DB key is::

    key group (2 bytes, big-endian) | len(K) (4 bytes) | K | len(N) (4 bytes) | N

where K and N are pickles (protocol 5, memo off so that equal keys give equal bytes) of the key and of the
namespace. Keys that compare equal across types (``True``, ``1``, ``1.0``) are stored as the int, as a dict
would treat them. Values are pickles (protocol 5). The key-group prefix makes one key group's entries one
contiguous range (``iter_key_group``), which is what snapshots by key group and rescaling read.
rocksdict's own pickling is off (``raw_mode``): this module owns the encoding.

Write-back cache. Each table fronts its column family with a dict, as Kafka Streams' record cache does:
reads look in the cache, then in the DB (and cache what they found, absence included); writes and deletes
only touch the cache and mark the entry dirty. When the cached entries of all tables exceed ``cache_entries``,
every dirty entry is written in one ``WriteBatch`` and the oldest half of each cache (by insertion) is
evicted. Hot keys therefore cost a dict operation, and state can be far larger than memory. A value changed
in place must be assigned back (``table[k] = v``): only assignment marks it dirty (the handles always do).

The write-ahead log is off, as in Flink: durability comes from checkpoints, and ``flush()``/``close()`` write
the cache and the memtables out.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import struct
from collections.abc import Callable, ItemsView, Iterator, MutableMapping, ValuesView
from itertools import islice
from typing import Any, cast

from rocksdict import (
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
    WriteOptions,
)

from state.backend import AbstractKeyedStateBackend, IncompatibleStateError
from state.keygroups import key_group_for

__all__ = ["DbKeyCodec", "RocksDBKeyedStateBackend", "RocksDBTable", "decode_db_key", "encode_db_key"]

_PROTOCOL = 5
_HEAD = struct.Struct(">HI")
_LEN = struct.Struct(">I")
_CF_PREFIX = "s."
_META_PREFIX = b"meta:"
_MAX_PARALLELISM_KEY = b"max_parallelism"
_KEY_SPACE_END = b"\x80"  # every DB key starts with a key group < 32768: first byte <= 0x7f

_MISS: Any = object()  # not in the cache
_ABSENT: Any = object()  # cached knowledge that the DB has no entry (or a pending delete when dirty)
_NO_DEFAULT: Any = object()

_dumps = pickle.dumps
_loads = pickle.loads


def _canonical(key: Any) -> Any:
    """The value equal keys of different types are stored as (True, 1 and 1.0 are one dict key)."""
    t = type(key)
    if t is str or t is int or t is bytes or key is None:
        return key
    if t is bool:
        return int(key)
    if t is float:
        return int(key) if key.is_integer() else key
    if t is tuple:
        for x in key:
            tx = type(x)
            if tx is not str and tx is not int and tx is not bytes and x is not None:
                return tuple(_canonical(k) for k in key)
        return key
    return key


_NONE_TAIL = _LEN.pack(len(_dumps(None, _PROTOCOL))) + _dumps(None, _PROTOCOL)
_pack_head = _HEAD.pack
_pack_len = _LEN.pack


class DbKeyCodec:
    """Encodes table entries ``(key, namespace)`` as DB keys (see the module docstring).

    Not thread-safe (it reuses one pickler): one per backend, used by the backend's mailbox thread.
    """

    def __init__(self, max_parallelism: int) -> None:
        """A codec for ``max_parallelism`` key groups."""
        self.max_parallelism = max_parallelism
        self._buf = io.BytesIO()
        self._pickler = pickle.Pickler(self._buf, _PROTOCOL)
        # fast mode: no memo, so equal objects pickle to equal bytes whatever their identities
        setattr(self._pickler, "fast", True)  # noqa: B010 - typeshed types the attribute wrongly

    def _canonical_pickle(self, obj: Any) -> bytes:
        t = type(obj)
        if t is str or t is int or t is bytes or obj is None:
            return _dumps(obj, _PROTOCOL)  # nothing in them the memo could share
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        self._pickler.dump(obj)
        return buf.getvalue()

    def encode(self, entry: tuple[Any, Any]) -> bytes:
        """The DB key of ``entry``.

        Raises:
            TypeError: ``entry`` is not a ``(key, namespace)`` pair, or the key cannot be a key.
        """
        if type(entry) is not tuple or len(entry) != 2:
            raise TypeError(f"a state table is keyed by (key, namespace) pairs, got {entry!r:.80}")
        key, ns = entry
        t = type(key)
        if t is str or t is int:  # the common keys: their pickles are canonical already
            kb = _dumps(key, _PROTOCOL)
        else:
            key = _canonical(key)
            kb = self._canonical_pickle(key)
        head = _pack_head(key_group_for(key, self.max_parallelism), len(kb))
        if ns is None:
            return head + kb + _NONE_TAIL
        nb = self._canonical_pickle(_canonical(ns))
        return head + kb + _pack_len(len(nb)) + nb


def encode_db_key(entry: tuple[Any, Any], max_parallelism: int) -> bytes:
    """The DB key of table entry ``(key, namespace)`` (a one-off; backends keep a ``DbKeyCodec``).

    Raises:
        TypeError: ``entry`` is not a ``(key, namespace)`` pair, or the key cannot be a key.
    """
    return DbKeyCodec(max_parallelism).encode(entry)


def decode_db_key(data: bytes) -> tuple[int, Any, Any]:
    """``(key group, key, namespace)`` of a DB key made by ``encode_db_key``."""
    kg, n = _HEAD.unpack_from(data, 0)
    key = _loads(data[6 : 6 + n])
    (m,) = _LEN.unpack_from(data, 6 + n)
    ns = _loads(data[10 + n : 10 + n + m])
    return kg, key, ns


class _ClosedColumnFamily:
    """Stands in for the column family of a closed backend: every use says so."""

    def __getattr__(self, attr: str) -> Any:
        raise RuntimeError("the RocksDB state backend of this table is closed")


_CLOSED_CF: Any = _ClosedColumnFamily()


class _ItemsView(ItemsView[tuple[Any, Any], Any]):
    _mapping: RocksDBTable

    def __iter__(self) -> Iterator[tuple[tuple[Any, Any], Any]]:
        return self._mapping._iter_items()


class _ValuesView(ValuesView[Any]):
    _mapping: RocksDBTable

    def __iter__(self) -> Iterator[Any]:
        for _, v in self._mapping._iter_items():
            yield v


class RocksDBTable(MutableMapping[tuple[Any, Any], Any]):
    """One state table: a column family behind a write-back cache. Get one with ``backend.table(name)``.

    Point operations (``get``, ``[]``, ``in``, assignment, ``del``, ``pop``, ``discard``) go through the cache.
    Iteration, ``len`` and the views first flush the backend's dirty entries, then read the column family in
    DB-key order (key group first); iterating while assigning is allowed (the iteration reads a DB snapshot).
    """

    def __init__(self, backend: RocksDBKeyedStateBackend, name: str, cf: Rdict, cf_handle: Any) -> None:
        """Made by ``RocksDBKeyedStateBackend.table``: ``cf`` reads the column family, ``cf_handle`` writes it."""
        self.name = name
        self._backend = backend
        self._cf = cf
        self._cfh = cf_handle
        self._cache: dict[tuple[Any, Any], Any] = {}
        self._dirty: set[tuple[Any, Any]] = set()
        self._limit = backend.cache_entries

    # -- point operations -----------------------------------------------------------------------------------

    def _load(self, k: tuple[Any, Any]) -> Any:
        raw = self._cf.get(self._backend._encode(k))
        v = _ABSENT if raw is None else _loads(raw)
        c = self._cache
        c[k] = v
        if len(c) > self._limit:
            self._backend._overflow()
        return v

    def get(self, k: tuple[Any, Any], default: Any = None) -> Any:
        """The value of entry ``k``, or ``default``: from the cache, else from the DB (then cached)."""
        v = self._cache.get(k, _MISS)
        if v is _MISS:
            v = self._load(k)
        return default if v is _ABSENT else v

    def __getitem__(self, k: tuple[Any, Any]) -> Any:
        v = self._cache.get(k, _MISS)
        if v is _MISS:
            v = self._load(k)
        if v is _ABSENT:
            raise KeyError(k)
        return v

    def __contains__(self, k: object) -> bool:
        v = self._cache.get(k, _MISS)  # type: ignore[call-overload]
        if v is _MISS:
            v = self._load(k)  # type: ignore[arg-type]
        return v is not _ABSENT

    def __setitem__(self, k: tuple[Any, Any], v: Any) -> None:
        c = self._cache
        c[k] = v
        self._dirty.add(k)
        if len(c) > self._limit:
            self._backend._overflow()

    def discard(self, k: tuple[Any, Any]) -> None:
        """Deletes entry ``k`` if present, without reading it (a blind delete)."""
        c = self._cache
        if c.get(k) is _ABSENT:  # known absent, or its delete is pending already
            return
        c[k] = _ABSENT
        self._dirty.add(k)
        if len(c) > self._limit:
            self._backend._overflow()

    def __delitem__(self, k: tuple[Any, Any]) -> None:
        if k not in self:
            raise KeyError(k)
        self.discard(k)

    def pop(self, k: tuple[Any, Any], default: Any = _NO_DEFAULT) -> Any:
        """Removes entry ``k`` and returns its value (``default`` if absent).

        Raises:
            KeyError: ``k`` is absent and no default was given.
        """
        v = self._cache.get(k, _MISS)
        if v is _MISS:
            v = self._load(k)
        if v is _ABSENT:
            if default is _NO_DEFAULT:
                raise KeyError(k)
            return default
        self.discard(k)
        return v

    # -- whole-table operations -----------------------------------------------------------------------------

    def _iter_items(self) -> Iterator[tuple[tuple[Any, Any], Any]]:
        self._backend.flush()
        cache = self._cache
        for kb, vb in cast(Iterator[tuple[bytes, bytes]], self._cf.items()):
            _, key, ns = decode_db_key(kb)
            k = (key, ns)
            v = cache.get(k, _MISS)  # the cached object, so callers see one identity per entry
            yield k, (_loads(vb) if v is _MISS or v is _ABSENT else v)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        self._backend.flush()
        for kb in cast(Iterator[bytes], self._cf.keys()):  # noqa: SIM118 - an Rdict, not a dict
            _, key, ns = decode_db_key(kb)
            yield key, ns

    def __len__(self) -> int:
        self._backend.flush()
        return sum(1 for _ in self._cf.keys())  # noqa: SIM118 - an Rdict, not a dict

    def items(self) -> _ItemsView:
        """A view whose iteration flushes, then scans the column family once (no point reads)."""
        return _ItemsView(self)

    def values(self) -> _ValuesView:
        """A view whose iteration flushes, then scans the column family once (no point reads)."""
        return _ValuesView(self)

    def clear(self) -> None:
        """Removes every entry (one range delete)."""
        self._cache.clear()
        self._dirty.clear()
        self._cf.delete_range(b"", _KEY_SPACE_END, self._backend._write_opts)

    def __repr__(self) -> str:
        return f"<RocksDBTable {self.name!r}: {len(self._cache)} cached, {len(self._dirty)} dirty>"

    # -- cache management (called by the backend) -----------------------------------------------------------

    def _evict_to(self, keep: int) -> None:
        """Keeps the ``keep`` most recently inserted cache entries; all entries must be clean."""
        c = self._cache
        drop = len(c) - keep
        if drop <= 0:
            return
        if keep <= 0:
            c.clear()
            return
        for k in list(islice(c, drop)):
            del c[k]


def _db_options(write_buffer_manager: WriteBufferManager, block_cache: Cache) -> Options:
    o = Options(raw_mode=True)
    o.create_if_missing(True)
    o.create_missing_column_families(True)
    o.set_write_buffer_size(16 << 20)
    o.set_max_write_buffer_number(2)
    o.set_write_buffer_manager(write_buffer_manager)
    o.set_keep_log_file_num(2)
    o.set_max_background_jobs(2)
    t = BlockBasedOptions()
    t.set_block_cache(block_cache)
    t.set_bloom_filter(10, False)  # point reads of keys that were never written stay off the disk
    o.set_block_based_table_factory(t)
    return o


class RocksDBKeyedStateBackend(AbstractKeyedStateBackend):
    """Keyed state in a RocksDB database at ``path``, tables as column families behind a write-back cache.

    See ``state.backend.KeyedStateBackend`` for the contract and this module's docstring for the layout.

    Attributes:
        path: the database directory.
        cache_entries: the budget of cached entries over all tables.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_parallelism: int = 128,
        cache_entries: int = 100_000,
        clock: Callable[[], int] | None = None,
        memtable_bytes: int = 64 << 20,
        block_cache_bytes: int = 32 << 20,
    ) -> None:
        """Opens (or creates) the database at ``path``; existing tables are readable at once.

        Args:
            path: directory of the database (the slot's local disk); created if missing.
            max_parallelism: number of key groups, 1..32768; must be the same on every open of one database.
            cache_entries: cached entries over all tables (>= 1) before dirty entries are written out and the
                oldest half is evicted.
            clock: processing time in integer ms, for TTL (default: the wall clock).
            memtable_bytes: memory for RocksDB's write buffers, all tables together.
            block_cache_bytes: RocksDB's block cache.

        Raises:
            ValueError: ``cache_entries`` or ``max_parallelism`` out of range.
        """
        super().__init__(max_parallelism, clock)
        if not isinstance(cache_entries, int) or cache_entries < 1:
            raise ValueError(f"cache_entries must be a positive int, got {cache_entries!r}")
        self.path = os.fspath(path)
        self.cache_entries = cache_entries
        os.makedirs(self.path, exist_ok=True)
        self._wbm = WriteBufferManager(memtable_bytes, False)
        self._block_cache = Cache(block_cache_bytes)
        self._opts = _db_options(self._wbm, self._block_cache)
        try:
            existing = Rdict.list_cf(self.path) if os.path.exists(os.path.join(self.path, "CURRENT")) else []
            db = Rdict(self.path, self._opts, column_families={n: self._opts for n in existing if n != "default"})
        except Exception as e:
            raise RuntimeError(
                f"cannot open the RocksDB state backend at {self.path} (is another backend using it?): {e}"
            ) from e
        self._db: Rdict | None = db
        self._write_opts = WriteOptions()
        # the WAL is off, as in Flink (durability comes from checkpoints); rocksdict's stubs call it a method,
        # at run time it is a property
        setattr(self._write_opts, "disable_wal", True)  # noqa: B010
        db.set_write_options(self._write_opts)
        stored_mp = db.get(_MAX_PARALLELISM_KEY)
        if stored_mp is None:
            db.put(_MAX_PARALLELISM_KEY, str(max_parallelism).encode(), self._write_opts)
        elif int(stored_mp) != max_parallelism:
            self._db = None
            db.close()
            raise ValueError(
                f"the RocksDB state at {self.path} was written with max_parallelism {int(stored_mp)}; it cannot be "
                f"opened with {max_parallelism} (key groups are part of every DB key)"
            )
        self._stored = [n[len(_CF_PREFIX) :] for n in existing if n.startswith(_CF_PREFIX)]
        self._tables: dict[str, RocksDBTable] = {}
        self._closed = False
        self._encode: Callable[[tuple[Any, Any]], bytes] = DbKeyCodec(max_parallelism).encode

    def _open_db(self) -> Rdict:
        if self._db is None:
            raise RuntimeError(f"the RocksDB state backend at {self.path} is closed")
        return self._db

    # -- tables ---------------------------------------------------------------------------------------------

    def table(self, name: str) -> RocksDBTable:
        """The table of state ``name`` (its column family is created if new)."""
        t = self._tables.get(name)
        if t is not None:
            return t
        db = self._open_db()
        if not isinstance(name, str) or not name:
            raise ValueError(f"a table name must be a non-empty str, got {name!r}")
        cf_name = _CF_PREFIX + name
        if name in self._stored:
            cf = db.get_column_family(cf_name)
        else:
            cf = db.create_column_family(cf_name, self._opts)
            self._stored.append(name)
        t = self._tables[name] = RocksDBTable(self, name, cf, db.get_column_family_handle(cf_name))
        self._set_limits()
        return t

    def table_names(self) -> list[str]:
        """Every table of the database, opened in this session or found on disk."""
        return list(self._stored)

    def _check_kind(self, name: str, kind: str, ttl: bool) -> None:
        db = self._open_db()
        meta_key = _META_PREFIX + name.encode("utf-8", "surrogatepass")
        raw = db.get(meta_key)
        if raw is None:
            db.put(meta_key, _dumps((kind, ttl), _PROTOCOL), self._write_opts)
            return
        stored_kind, stored_ttl = _loads(raw)
        if (stored_kind, stored_ttl) != (kind, ttl):
            raise IncompatibleStateError(
                f"state {name!r} in {self.path} holds {stored_kind} state {'with' if stored_ttl else 'without'} "
                f"TTL; it cannot be read as {kind} state {'with' if ttl else 'without'} TTL"
            )

    # -- cache ----------------------------------------------------------------------------------------------

    def _set_limits(self) -> None:
        """Gives each table an equal share of the free cache budget.

        A table that outgrows its share calls ``_overflow``, which only recomputes the shares while the budget is
        not used up; so the caches never hold more than ``cache_entries`` entries once an operation returns.
        """
        tables = list(self._tables.values())
        total = sum(len(t._cache) for t in tables)
        share = max(0, (self.cache_entries - total) // len(tables))
        for t in tables:
            t._limit = len(t._cache) + share

    def _overflow(self) -> None:
        """A table outgrew its share: if all caches together exceed the budget, write out and evict."""
        tables = list(self._tables.values())
        total = sum(len(t._cache) for t in tables)
        if total > self.cache_entries:
            self.flush()
            keep = self.cache_entries // 2
            for t in tables:
                t._evict_to(len(t._cache) * keep // total)
        self._set_limits()

    def cached_entries(self) -> int:
        """Entries held in the caches now (clean and dirty)."""
        return sum(len(t._cache) for t in self._tables.values())

    def dirty_entries(self) -> int:
        """Entries written to the caches and not yet to the DB."""
        return sum(len(t._dirty) for t in self._tables.values())

    def flush(self) -> None:
        """Writes every dirty cache entry to the DB in one WriteBatch (entries stay cached, clean).

        Raises:
            TypeError: a value cannot be pickled (the entry stays dirty).
        """
        dirty = [t for t in self._tables.values() if t._dirty]
        if not dirty:
            return
        db = self._open_db()
        wb = WriteBatch(raw_mode=True)
        enc = self._encode
        for t in dirty:
            cache, h = t._cache, t._cfh
            for k in t._dirty:
                v = cache[k]
                if v is _ABSENT:
                    wb.delete(enc(k), h)
                    continue
                try:
                    data = _dumps(v, _PROTOCOL)
                except Exception as e:
                    raise TypeError(
                        f"state {t.name!r}: the value of key {k[0]!r:.60} (namespace {k[1]!r:.60}) cannot be "
                        f"pickled: {e}"
                    ) from e
                wb.put(enc(k), data, h)
        db.write(wb, self._write_opts)
        for t in dirty:
            t._dirty.clear()

    # -- key groups -----------------------------------------------------------------------------------------

    def iter_key_group(self, key_group: int) -> Iterator[tuple[str, Any, Any, Any]]:
        """Every entry of ``key_group``: ``(table name, key, namespace, stored value)``, one range scan per table.

        Raises:
            ValueError: ``key_group`` is not in ``0..max_parallelism - 1``.
        """
        if not 0 <= key_group < self.max_parallelism:
            raise ValueError(f"key group {key_group} is out of range 0..{self.max_parallelism - 1}")
        self.flush()
        prefix = struct.pack(">H", key_group)
        for name in list(self._stored):
            t = self.table(name)
            for kb, vb in cast(Iterator[tuple[bytes, bytes]], t._cf.items(from_key=prefix)):
                if kb[:2] != prefix:
                    break
                _, key, ns = decode_db_key(kb)
                yield name, key, ns, _loads(vb)

    # -- life cycle -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Writes the caches and the memtables to disk and closes the database. Idempotent."""
        if self._closed:
            return
        self.flush()
        db = self._open_db()
        for t in self._tables.values():
            t._cf.flush(True)
            t._cf.close()
            t._cf = _CLOSED_CF
            t._cfh = None
            t._cache.clear()
        db.flush(True)
        self._tables.clear()
        self._handles.clear()
        db.close()
        self._db = None
        self._closed = True

    def dispose(self) -> None:
        """Closes the database and deletes its directory."""
        if not self._closed:
            # nothing needs writing: skip the flush, just release the DB
            for t in self._tables.values():
                t._dirty.clear()
            self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<RocksDBKeyedStateBackend {self.path} tables={self.table_names()}>"
