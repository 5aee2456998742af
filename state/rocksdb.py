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

Raw keyed state (``write_raw_state``: an opaque value per (name, key group), e.g. the timers) is the column family
``r.<name>``, keyed by the key group alone (2 bytes, big-endian), written straight to the DB (no cache): it is
part of every native checkpoint and is read by key-group range like the tables.

Write-back cache. Each table fronts its column family with a dict, as Kafka Streams' record cache does:
reads look in the cache, then in the DB (and cache what they found, absence included); writes and deletes
only touch the cache and mark the entry dirty. When the cached entries of all tables exceed ``cache_entries``,
every dirty entry is written out (``flush``) and the oldest half of each cache (by insertion) is evicted. Hot keys
therefore cost a dict operation, and state can be far larger than memory. A value changed in place must be
assigned back (``table[k] = v``): only assignment marks it dirty (the handles always do).

Write-outs. Dirty entries reach the DB through write-outs: captured on the mailbox thread (keys, and their values
pickled in chunks), queued, and applied in capture order under one write lock, in steps, by the mailbox thread
between records (``advance_write_out``), by a checkpoint's upload thread, or at once by ``flush``. A checkpoint's
synchronous part (``snapshot``) only captures; its native checkpoint is taken right after its write-out is applied,
before any later one. Until a write-out is applied, its entries stay in the cache (deletes as absent markers), so
reads never see the DB behind the cache.

Overlays. A checkpoint does not write the entries changed since the last one into the DB: it pickles them into an
*overlay* file uploaded next to the native checkpoint, and they stay in the cache, unwritten (``_held``); the
native checkpoint plus the overlay are the state at the barrier, and restore writes the overlay over the database.
What the last overlay held and nothing changed since is written out by the next checkpoint. So an entry that
lives less than a checkpoint interval (a window's contents) never touches the DB. See ``snapshot``.

The write-ahead log is off, as in Flink: durability comes from checkpoints, and ``flush()``/``close()`` write
the cache and the memtables out.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
import struct
import threading
import uuid
from collections import deque
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping, MutableMapping, ValuesView
from itertools import islice, repeat
from typing import TYPE_CHECKING, Any, cast

from rocksdict import (
    AccessType,
    BlockBasedOptions,
    Cache,
    Checkpoint,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
    WriteOptions,
)

from state.backend import AbstractKeyedStateBackend, IncompatibleStateError
from state.keygroups import key_group_for
from state.snapshot import (
    KIND_CANONICAL,
    KIND_ROCKSDB_INCREMENTAL,
    CorruptStateError,
    KeyedStateHandle,
    PendingSnapshot,
    StateFile,
    download_handle,
    iter_downloaded,
    iter_downloaded_raw,
    join_path,
    plan_restore,
    upload_key_group_blobs,
)

if TYPE_CHECKING:
    from state.storage import CheckpointStorage

__all__ = [
    "DbKeyCodec",
    "RocksDBKeyedStateBackend",
    "RocksDBTable",
    "decode_db_key",
    "encode_db_key",
    "iter_db_dir_entries",
    "iter_db_dir_raw",
    "iter_db_dir_raw_state",
    "read_overlay",
]

_PROTOCOL = 5
_HEAD = struct.Struct(">HI")
_LEN = struct.Struct(">I")
_CF_PREFIX = "s."
_RAW_PREFIX = "r."  # raw keyed state: one column family per name, keyed by the 2-byte key group
_META_PREFIX = b"meta:"
_MAX_PARALLELISM_KEY = b"max_parallelism"
_KEY_SPACE_END = b"\x80"  # every DB key starts with a key group < 32768: first byte <= 0x7f

_MISS: Any = object()  # not in the cache


class _Absent:
    """The type of ``_ABSENT``; it pickles as a reference to the one instance, so a captured write-out can carry
    deletes among its pickled values (``RocksDBKeyedStateBackend._capture``) and the loads give ``_ABSENT`` back."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "_ABSENT"

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()  # cached knowledge that the DB has no entry (or a pending delete when dirty)
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

    The encoded head of a key (key group, length, pickle) and the encoded tail of a namespace are remembered for
    keys and namespaces of the exact types ``int`` and ``str`` (``memo_entries`` of each at most; the memo is
    emptied when full), so writing out a cache of recurring keys -- every checkpoint does -- does not pickle and
    hash them again. Only those two types: equal values of other types (``True``, ``1.0``, an ``IntEnum``) would
    share a memo entry whose bytes were made from another type.

    Not thread-safe (it reuses one pickler): one per backend, used by the backend's mailbox thread.
    """

    def __init__(self, max_parallelism: int, memo_entries: int = 1 << 15) -> None:
        """A codec for ``max_parallelism`` key groups."""
        self.max_parallelism = max_parallelism
        self._buf = io.BytesIO()
        self._pickler = pickle.Pickler(self._buf, _PROTOCOL)
        # fast mode: no memo, so equal objects pickle to equal bytes whatever their identities
        setattr(self._pickler, "fast", True)  # noqa: B010 - typeshed types the attribute wrongly
        self._memo_entries = memo_entries
        self._heads: dict[int | str, bytes] = {}
        self._tails: dict[int | str, bytes] = {}

    def _canonical_pickle(self, obj: Any) -> bytes:
        t = type(obj)
        if t is str or t is int or t is bytes or obj is None:
            return _dumps(obj, _PROTOCOL)  # nothing in them the memo could share
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        self._pickler.dump(obj)
        return buf.getvalue()

    def _head(self, key: Any) -> bytes:
        """key group | len | pickle of ``key`` (canonicalized)."""
        t = type(key)
        if t is str or t is int:  # the common keys: their pickles are canonical already
            kb = _dumps(key, _PROTOCOL)
        else:
            key = _canonical(key)
            kb = self._canonical_pickle(key)
        return _pack_head(key_group_for(key, self.max_parallelism), len(kb)) + kb

    def encode(self, entry: tuple[Any, Any]) -> bytes:
        """The DB key of ``entry``.

        Raises:
            TypeError: ``entry`` is not a ``(key, namespace)`` pair, or the key cannot be a key.
        """
        if type(entry) is not tuple or len(entry) != 2:
            raise TypeError(f"a state table is keyed by (key, namespace) pairs, got {entry!r:.80}")
        key, ns = entry
        t = type(key)
        if t is int or t is str:
            head = self._heads.get(key)
            if head is None:
                heads = self._heads
                if len(heads) >= self._memo_entries:
                    heads.clear()
                head = heads[key] = self._head(key)
        else:
            head = self._head(key)
        if ns is None:
            return head + _NONE_TAIL
        t = type(ns)
        if t is int or t is str:
            tail = self._tails.get(ns)
            if tail is None:
                tails = self._tails
                if len(tails) >= self._memo_entries:
                    tails.clear()
                nb = _dumps(ns, _PROTOCOL)
                tail = tails[ns] = _pack_len(len(nb)) + nb
            return head + tail
        nb = self._canonical_pickle(_canonical(ns))
        return head + _pack_len(len(nb)) + nb


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

    def __init__(
        self, backend: RocksDBKeyedStateBackend, name: str, cf: Rdict, cf_handle: Any, db_empty: bool = False
    ) -> None:
        """Made by ``RocksDBKeyedStateBackend.table``: ``cf`` reads the column family, ``cf_handle`` writes it;
        ``db_empty``: the column family was created empty just now."""
        self.name = name
        # True while the column family holds no entry once the queued write-outs are applied: an entry missing from
        # the cache then does not exist (no DB read), and a deleted one is simply forgotten. Kept by the captures
        # from ``_in_db`` (checked by ``hot_path`` callers per batch).
        self.db_empty = db_empty
        # the keys the column family holds once the queued write-outs are applied, known for a table created empty
        # in this session until it outgrows the cache budget; None: unknown (restored, reopened, too many)
        self._in_db: set[tuple[Any, Any]] | None = set() if db_empty else None
        self._delete_item: _WriteOut | None = None  # the last write-out with a delete of this table
        self._backend = backend
        self._cf = cf
        self._cfh = cf_handle
        self._cache: dict[tuple[Any, Any], Any] = {}
        self._dirty: set[tuple[Any, Any]] = set()
        # dirty entries the caller created knowing the DB has none (put_new): deleting one before it is
        # written out costs nothing, no DB delete (windows that open and fire between two flushes)
        self._new: set[tuple[Any, Any]] = set()
        # the entries of the last checkpoint's overlay (see ``RocksDBKeyedStateBackend.snapshot``): not written
        # since, unless changed again (dirty) or gone from the cache (a new entry deleted: nothing to write; kept
        # here, since removing each one at its delete costs more than skipping it at the next checkpoint)
        self._held: set[tuple[Any, Any]] = set()
        self._limit = backend.cache_entries

    # -- point operations -----------------------------------------------------------------------------------

    def _load(self, k: tuple[Any, Any]) -> Any:
        if self.db_empty:
            v = _ABSENT
        else:
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

    def put_new(self, k: tuple[Any, Any], v: Any) -> None:
        """Creates entry ``k``, which the caller knows is in neither the cache nor the DB (no read needed)."""
        c = self._cache
        if k not in c and not self.db_empty:  # (a cached pending delete means the DB may hold it: not new)
            self._new.add(k)
        c[k] = v
        self._dirty.add(k)
        if len(c) > self._limit:
            self._backend._overflow()

    def hot_path(
        self,
    ) -> tuple[dict[tuple[Any, Any], Any], set[tuple[Any, Any]], set[tuple[Any, Any]], Any]:
        """``(cache, dirty, new, absent)``: the table's write-back cache, its sets of dirty entries and of entries
        the DB does not hold, and the cache's marker of an absent entry, for a caller's own hot loop over a batch
        (the window operator's). Valid until the backend is closed or restored.

        The rules: ``v = cache.get(k, absent)``; when ``v is not absent``, ``v`` is entry ``k``'s current value and
        the caller may replace it by ``cache[k] = new; dirty.add(k)`` (a value changed in place must be assigned
        back the same way). To create an entry the caller knows is in neither the cache nor the DB (``put_new``):
        ``if k not in cache: new.add(k)``, then ``cache[k] = v; dirty.add(k)``, and ``fit()`` once the batch is
        done. While ``db_empty`` (read it once per batch: only the table's methods change it), a miss or an absent
        entry means the entry does not exist, and creating one is ``cache[k] = v; dirty.add(k)``. Anything else --
        reading a miss or an absent entry, deleting -- goes through the table's methods. Nothing else may be written
        into these containers.
        """
        return self._cache, self._dirty, self._new, _ABSENT

    def fit(self) -> None:
        """Brings the caches back within the budget after entries were created through ``hot_path``."""
        if len(self._cache) > self._limit:
            self._backend._overflow()

    def pop_many(self, keys: Iterable[tuple[Any, Any]], default: Any) -> list[Any]:
        """``[self.pop(k, default) for k in keys]`` in one call, ``keys`` distinct (a window firing a whole
        timestamp)."""
        c = self._cache
        new, dirty = self._new, self._dirty
        if not isinstance(keys, list | tuple):
            keys = list(keys)
        if self.db_empty:  # nothing to delete in the DB: every present entry is forgotten
            values = list(map(c.pop, keys, repeat(default)))
            if new:
                new.difference_update(keys)
            dirty.difference_update(keys)
            if _ABSENT in values:  # (cached absences of earlier reads)
                values = [default if v is _ABSENT else v for v in values]
            return values
        if new.issuperset(keys):
            # the common case, entries the DB never had (windows opened and fired since the last write-out):
            # cached and present, so they are simply forgotten -- set operations in C, no loop here
            values = list(map(c.pop, keys))
            new.difference_update(keys)
            dirty.difference_update(keys)
            return values
        out: list[Any] = []
        append = out.append
        for k in keys:
            v = c.get(k, _MISS)
            if v is _MISS:
                v = self._load(k)
            if v is _ABSENT:
                append(default)
                continue
            if k in new:  # never written to the DB: forget it (as ``discard``)
                new.discard(k)
                dirty.discard(k)
                del c[k]
            else:
                c[k] = _ABSENT
                dirty.add(k)  # (the entry was cached already: the cache did not grow)
            append(v)
        return out

    def discard(self, k: tuple[Any, Any]) -> None:
        """Deletes entry ``k`` if present, without reading it (a blind delete)."""
        c = self._cache
        if self.db_empty or k in self._new:  # never written to the DB: forget it, leave the cache to live entries
            self._new.discard(k)
            self._dirty.discard(k)
            c.pop(k, None)
            return
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
        c = self._cache
        v = c.get(k, _MISS)
        if v is _MISS:
            v = self._load(k)
        if v is _ABSENT:
            if default is _NO_DEFAULT:
                raise KeyError(k)
            return default
        # ``discard``, inlined (windows pop every entry they create)
        if self.db_empty or k in self._new:
            self._new.discard(k)
            self._dirty.discard(k)
            c.pop(k, None)
        else:
            c[k] = _ABSENT
            self._dirty.add(k)
            if len(c) > self._limit:
                self._backend._overflow()
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
        """Removes every entry (one range delete; queued write-outs are applied first, so none brings one back)."""
        self._backend.flush()
        self._cache.clear()
        self._dirty.clear()
        self._new.clear()
        self._held.clear()
        self._cf.delete_range(b"", _KEY_SPACE_END, self._backend._write_opts)
        self._in_db = set()
        self.db_empty = True

    def __repr__(self) -> str:
        return f"<RocksDBTable {self.name!r}: {len(self._cache)} cached, {len(self._unwritten())} dirty>"

    def _unwritten(self) -> list[tuple[Any, Any]]:
        """The entries whose cached value the DB does not have (yet): dirty, or held in the last overlay."""
        dirty = self._dirty
        held = self._stale() if self._held else []
        return held + list(dirty) if held else list(dirty)

    def _stale(self) -> list[tuple[Any, Any]]:
        """The entries of the last checkpoint's overlay still cached and not changed since."""
        return list((self._cache.keys() & self._held) - self._dirty)  # (set operations in C)

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


def _unpicklable(name: str, keys: list[tuple[Any, Any]], values: list[Any], e: Exception) -> TypeError:
    """The error for a value of table ``name`` that cannot be pickled, naming its entry."""
    for k, v in zip(keys, values, strict=True):
        try:
            _dumps(v, _PROTOCOL)
        except Exception as e2:  # noqa: BLE001
            return TypeError(
                f"state {name!r}: the value of key {k[0]!r:.60} (namespace {k[1]!r:.60}) cannot be pickled: {e2}"
            )
    return TypeError(f"state {name!r}: the values cannot be pickled: {e}")


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


_KG = struct.Struct(">H")


@contextlib.contextmanager
def _open_read_only(path: str, prefix: str = _CF_PREFIX) -> Iterator[tuple[Rdict, dict[str, Rdict]]]:
    """A database directory (a native checkpoint, or downloaded files) opened read-only: (db, table -> CF).

    ``prefix`` picks the column families: tables (``s.``), or raw keyed state (``r.``).
    """
    o = Options(raw_mode=True)
    try:
        names = Rdict.list_cf(path, o)
        db = Rdict(
            path, o, column_families={n: o for n in names if n != "default"}, access_type=AccessType.read_only(False)
        )
    except Exception as e:
        raise CorruptStateError(f"the RocksDB files in {path} cannot be opened: {e}") from e
    cfs = {n[len(prefix) :]: db.get_column_family(n) for n in names if n.startswith(prefix)}
    try:
        yield db, cfs
    finally:
        for cf in cfs.values():
            cf.close()
        cfs.clear()
        db.close()


def _scan(cf: Rdict, start: int, stop: int) -> Iterator[tuple[bytes, bytes]]:
    """The raw entries of key groups ``start..stop - 1`` of a column family, in DB-key order."""
    end = _KG.pack(stop) if stop <= 0xFFFF else _KEY_SPACE_END
    for kb, vb in cast(Iterator[tuple[bytes, bytes]], cf.items(from_key=_KG.pack(start))):
        if kb >= end:
            break
        yield kb, vb


def iter_db_dir_raw(path: str, key_groups: range) -> Iterator[tuple[str, bytes, bytes]]:
    """Every entry of ``key_groups`` in the RocksDB database at ``path``, raw: ``(table, DB key, value pickle)``.

    Opens the database read-only for the iteration (one range scan per table).

    Raises:
        CorruptStateError: the files cannot be opened as a database.
    """
    with _open_read_only(path) as (_, cfs):
        for name, cf in cfs.items():
            for kb, vb in _scan(cf, key_groups.start, key_groups.stop):
                yield name, kb, vb


Overlay = list[tuple[str, list[tuple[Any, Any]], list[Any]]]
"""A checkpoint's overlay, loaded: ``(table, [(key, namespace)], [value or the absent marker: a delete])``."""


def read_overlay(directory: str, uri: str) -> Overlay:
    """The overlay of a downloaded ``rocksdb-incremental`` handle's files in ``directory`` ([] when it has none);
    the file is removed, so that ``directory`` is only a database. ``uri`` names the checkpoint in errors.

    Raises:
        CorruptStateError: the overlay cannot be read.
    """
    path = os.path.join(directory, _OVERLAY_NAME)
    if not os.path.exists(path):
        return []
    try:
        with open(path, "rb") as f:
            version, chunks = _loads(f.read())
        if version != _OVERLAY_FORMAT:
            raise CorruptStateError(f"the overlay of checkpoint {uri} has format {version!r}; this weir reads "
                                    f"format {_OVERLAY_FORMAT}: restore it with the weir that wrote it")
        overlay: Overlay = []
        for name, keys_blob, values_blob in chunks:
            keys, values = _loads(keys_blob), _loads(values_blob)
            if not isinstance(name, str) or len(keys) != len(values):
                raise ValueError("a chunk's table name or lengths are wrong")
            overlay.append((name, keys, values))
    except CorruptStateError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes pickle raise
        raise CorruptStateError(f"the overlay of checkpoint {uri} ({_OVERLAY_NAME}) cannot be read: {e}") from e
    os.remove(path)
    return overlay


def iter_db_dir_entries(
    path: str, key_groups: range, max_parallelism: int, uri: str
) -> Iterator[tuple[str, Any, Any, Any]]:
    """The entries ``(table, key, namespace, value)`` of ``key_groups`` in a downloaded ``rocksdb-incremental``
    handle's files at ``path``: the database with the checkpoint's overlay written over it (see
    ``read_overlay``; ``uri`` names the checkpoint in errors).

    Raises:
        CorruptStateError: the files cannot be opened as a database, or the overlay cannot be read.
    """
    overlay = read_overlay(path, uri)
    over: dict[tuple[str, bytes], Any] = {}
    enc = DbKeyCodec(max_parallelism).encode
    for name, keys, values in overlay:
        for k, v in zip(keys, values, strict=True):
            kb = enc(k)
            if _KG.unpack_from(kb)[0] in key_groups:
                over[(name, kb)] = v
    for name, kb, vb in iter_db_dir_raw(path, key_groups):
        v = over.pop((name, kb), _MISS)
        if v is _MISS:
            v = _loads(vb)
        elif v is _ABSENT:
            continue
        _, key, ns = decode_db_key(kb)
        yield name, key, ns, v
    for (name, kb), v in over.items():
        if v is not _ABSENT:
            _, key, ns = decode_db_key(kb)
            yield name, key, ns, v


def iter_db_dir_raw_state(path: str, key_groups: range) -> Iterator[tuple[str, int, bytes]]:
    """The raw keyed state of ``key_groups`` in the RocksDB database at ``path``: ``(name, key group, value)``.

    Raises:
        CorruptStateError: the files cannot be opened as a database.
    """
    with _open_read_only(path, _RAW_PREFIX) as (_, cfs):
        for name, cf in cfs.items():
            for kb, vb in _scan(cf, key_groups.start, key_groups.stop):
                yield name, _KG.unpack(kb)[0], vb


def _stored_kinds(db: Rdict) -> dict[str, list[Any]]:
    """state name -> [kind, ttl on] of the meta records in the default column family."""
    out: dict[str, list[Any]] = {}
    for kb, vb in cast(Iterator[tuple[bytes, bytes]], db.items(from_key=_META_PREFIX)):
        if not kb.startswith(_META_PREFIX):
            break
        kind, ttl = _loads(vb)
        out[kb[len(_META_PREFIX) :].decode("utf-8", "surrogatepass")] = [kind, ttl]
    return out


def _is_shared_file(name: str) -> bool:
    """SST (and blob) files are immutable: uploaded once, referenced by later checkpoints."""
    return name.endswith((".sst", ".blob"))


_CHUNK = 1024  # entries per step of a write-out: one pickle of captured values, one WriteBatch
_OVERLAY_CHUNK = 8192  # entries per pickle of a checkpoint's overlay
_OVERLAY_NAME = "WEIR-OVERLAY"  # a checkpoint's overlay file, by its local name (RocksDB ignores the name)
_OVERLAY_FORMAT = 1
_UPLOAD_PATIENCE_S = 0.05  # an upload waits this long for the mailbox thread to make progress before writing itself


_DONE_STEP: Any = None  # an applied step's slot (its pickle freed)
_PENDING_ITEM: Any = object()  # a table's ``_delete_item`` while its write-out is being captured

_RawWrite = tuple[str, "Mapping[int, bytes] | Callable[[], Mapping[int, bytes]]"]
"""A raw keyed state write: ``(name, blobs)``, or ``(name, a function producing the blobs)``."""


class _WriteOut:
    """DB writes captured on the mailbox thread, applied later, in capture order, one step at a time, under the
    backend's write lock: by the mailbox thread between records (``advance_write_out``), by a checkpoint's upload
    thread, or by the mailbox thread at once when it needs the DB up to date (``flush``).

    ``steps``: ``(table, keys, pickle of their values)`` per chunk of ``_CHUNK`` entries, ``_ABSENT`` for a delete
    (one ``dumps`` per chunk is far cheaper on the mailbox thread than one per value, and the values must be
    serialized at the barrier since they may be changed in place later); ``next``: the steps applied so far;
    ``deleted``: the keys the applied steps deleted, for ``_reap``. ``raw``: raw keyed state writes ``(name, blobs
    or a function producing them)`` (``write_raw_state``, ``write_raw_state_later``), applied after the steps, in
    order; a producer is called by the applying thread, which the mailbox thread leaves to the upload.
    ``checkpoint_dir``: a native checkpoint to take right after the writes, before any later write-out (None:
    none). A step is idempotent (puts and deletes of fixed bytes), so a failed one is simply applied again.
    """

    __slots__ = ("steps", "next", "deleted", "raw", "written", "checkpoint_dir", "lock", "done", "made",
                 "cancelled", "error")

    def __init__(
        self,
        steps: list[tuple[RocksDBTable, list[tuple[Any, Any]], bytes]],
        raw: list[_RawWrite],
        checkpoint_dir: str | None,
    ) -> None:
        self.steps = steps
        self.next = 0
        self.deleted: list[tuple[RocksDBTable, list[tuple[Any, Any]]]] = []
        self.raw = raw
        self.written = False  # every step and the raw writes applied
        self.checkpoint_dir = checkpoint_dir
        self.lock = threading.Lock()  # guards checkpoint_dir and made against a concurrent discard
        self.done = False  # written, and its checkpoint taken or given up: it has left the queue
        self.made = False  # its native checkpoint directory exists
        self.cancelled = False  # dropped unwritten by ``dispose``
        self.error: BaseException | None = None  # why its native checkpoint could not be made

    def give_up_checkpoint(self) -> None:
        """The snapshot will not be uploaded: take no native checkpoint, remove one already made. The writes
        still happen (in order), so nothing written before the barrier is lost."""
        with self.lock:
            d, self.checkpoint_dir = self.checkpoint_dir, None
            made, self.made = self.made, False
        if d is not None and made:
            shutil.rmtree(d, ignore_errors=True)


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
        self._write_opts = WriteOptions()
        # the WAL is off, as in Flink (durability comes from checkpoints); rocksdict's stubs call it a method,
        # at run time it is a property
        setattr(self._write_opts, "disable_wal", True)  # noqa: B010
        self._db: Rdict | None = None
        self._stored: list[str] = []
        self._raw_stored: list[str] = []  # raw keyed states in the database
        self._raw: dict[str, tuple[Rdict, Any]] = {}  # the open ones: name -> (column family, its handle)
        self._open()
        self._tables: dict[str, RocksDBTable] = {}
        self._closed = False
        self._encode: Callable[[tuple[Any, Any]], bytes] = DbKeyCodec(max_parallelism).encode
        # checkpoints (see ``snapshot``); the lock guards what upload threads share with the mailbox thread
        self._instance_id = uuid.uuid4().hex[:16]
        self._snap_lock = threading.Lock()
        self._uploaded: dict[int, tuple[str, dict[str, StateFile]]] = {}  # checkpoint -> (storage, SST files)
        self._confirmed_id: int | None = None  # None: nothing confirmed, or the confirmed files are restored ones
        self._confirmed: tuple[str, dict[str, StateFile]] | None = None  # SST files later checkpoints may reuse
        self._pending: list[_Pending] = []
        # write-outs captured at checkpoints and not yet applied, oldest first (appended by the mailbox thread only;
        # see ``_drain``); every DB write of table entries or raw state and every native checkpoint is made under
        # ``_write_lock``, in queue order, so a native checkpoint holds exactly the state of its barrier
        self._queue: deque[_WriteOut] = deque()
        self._write_lock = threading.Lock()
        self._written: deque[_WriteOut] = deque()  # applied; their deletes not yet dropped from the caches
        # the draining thread's own codec (a codec is not thread-safe; the mailbox thread's reads use _encode)
        self._write_encode: Callable[[tuple[Any, Any]], bytes] = DbKeyCodec(max_parallelism).encode
        # raw state name -> the key groups the DB holds (kept by the thread applying raw writes, under _write_lock)
        self._raw_present: dict[str, set[int]] = {}
        self._raw_later: list[_RawWrite] = []  # write_raw_state_later's, for the next write-out (mailbox thread)
        # raw states whose last write was lost (its producer raised): name -> why; no native checkpoint is made
        # until each is written again (under _write_lock)
        self._raw_lost: dict[str, str] = {}
        self._left_to_upload = False  # advance_write_out stopped at a producer: the waiting upload calls it
        self._advancing = False  # the mailbox thread calls advance_write_out
        self._steps_applied = 0  # write-out steps applied so far (progress, for a waiting upload)
        self._progress = threading.Condition()

    def _open(self) -> None:
        """Opens (or creates) the database at ``self.path``."""
        try:
            existing = Rdict.list_cf(self.path) if os.path.exists(os.path.join(self.path, "CURRENT")) else []
            db = Rdict(self.path, self._opts, column_families={n: self._opts for n in existing if n != "default"})
        except Exception as e:
            raise RuntimeError(
                f"cannot open the RocksDB state backend at {self.path} (is another backend using it?): {e}"
            ) from e
        db.set_write_options(self._write_opts)
        stored_mp = db.get(_MAX_PARALLELISM_KEY)
        if stored_mp is None:
            db.put(_MAX_PARALLELISM_KEY, str(self.max_parallelism).encode(), self._write_opts)
        elif int(stored_mp) != self.max_parallelism:
            db.close()
            raise ValueError(
                f"the RocksDB state at {self.path} was written with max_parallelism {int(stored_mp)}; it cannot be "
                f"opened with {self.max_parallelism} (key groups are part of every DB key)"
            )
        self._db = db
        self._stored = [n[len(_CF_PREFIX) :] for n in existing if n.startswith(_CF_PREFIX)]
        self._raw_stored = [n[len(_RAW_PREFIX) :] for n in existing if n.startswith(_RAW_PREFIX)]

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
        empty = name not in self._stored
        if not empty:
            cf = db.get_column_family(cf_name)
        else:
            cf = db.create_column_family(cf_name, self._opts)
            self._stored.append(name)
        t = self._tables[name] = RocksDBTable(self, name, cf, db.get_column_family_handle(cf_name), empty)
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

    # -- raw keyed state ------------------------------------------------------------------------------------

    def _raw_cf(self, name: str, create: bool) -> tuple[Rdict, Any] | None:
        """The column family of raw state ``name`` and its handle (None if it does not exist and not ``create``)."""
        entry = self._raw.get(name)
        if entry is not None:
            return entry
        db = self._open_db()
        cf_name = _RAW_PREFIX + name
        if name in self._raw_stored:
            cf = db.get_column_family(cf_name)
        elif create:
            cf = db.create_column_family(cf_name, self._opts)
            self._raw_stored.append(name)
        else:
            return None
        entry = self._raw[name] = (cf, db.get_column_family_handle(cf_name))
        return entry

    def _close_raw(self) -> None:
        for cf, _ in self._raw.values():
            cf.close()
        self._raw.clear()

    def write_raw_state(self, name: str, blobs: Mapping[int, bytes]) -> None:
        """See ``KeyedStateBackend.write_raw_state``: one WriteBatch of puts, and deletes of the key groups it held
        that ``blobs`` does not; the cache is not involved. Queued behind a write-out in flight (it must not reach
        the DB before that one's native checkpoint), else written at once."""
        self._check_raw(name, blobs)
        if not blobs and name not in self._raw_stored:
            return
        self._raw_cf(name, create=True)
        ops = self._take_raw_later()
        ops.append((name, dict(blobs)))
        if self._queue:
            self._queue.append(_WriteOut([], ops, None))
            return
        with self._write_lock:
            db = self._open_db()
            for op in ops:
                self._apply_raw(db, op)

    def write_raw_state_later(self, name: str, produce: Callable[[], Mapping[int, bytes]]) -> None:
        """See ``KeyedStateBackend.write_raw_state_later``: the write joins the next write-out (a checkpoint's,
        normally), and ``produce`` is called by the thread that applies it -- a checkpoint's upload thread, as
        ``advance_write_out`` leaves producers to it."""
        self._check_raw(name, {})
        self._raw_cf(name, create=True)  # (now, on this thread: the upload thread only writes)
        self._raw_later.append((name, produce))

    def _take_raw_later(self) -> list[_RawWrite]:
        ops, self._raw_later = self._raw_later, []
        return ops

    def _apply_raw(self, db: Rdict, op: _RawWrite) -> int:
        """Applies one raw keyed state write (calling its producer); the entries written. Holds ``_write_lock``.
        A producer that raises loses the write: the state is recorded in ``_raw_lost``."""
        name, data = op
        if callable(data):
            try:
                blobs = data()
                self._check_raw(name, blobs)
            except Exception as e:  # noqa: BLE001 - reported by the next native checkpoint
                self._raw_lost[name] = f"{type(e).__name__}: {e}"
                return 0
        else:
            blobs = data
        entry = self._raw_cf(name, create=False)
        if entry is None:  # (created by write_raw_state*, unless a restore replaced the DB since: nothing to do)
            return 0
        cf, h = entry
        present = self._raw_present.get(name)
        if present is None:
            present = {_KG.unpack(kb)[0] for kb in cast(Iterator[bytes], cf.keys())}  # noqa: SIM118 - an Rdict
        pack = _KG.pack
        wb = WriteBatch(raw_mode=True)
        for kg in present:
            if kg not in blobs:
                wb.delete(pack(kg), h)
        for kg, value in blobs.items():
            wb.put(pack(kg), value, h)
        db.write(wb, self._write_opts)
        self._raw_present[name] = set(blobs)
        self._raw_lost.pop(name, None)
        return len(blobs)

    def read_raw_state(self, name: str) -> dict[int, bytes]:
        """See ``KeyedStateBackend.read_raw_state`` (applies queued write-outs first)."""
        if self._queue or self._raw_later:
            self.flush()
        entry = self._raw_cf(name, create=False)
        if entry is None:
            return {}
        return {_KG.unpack(kb)[0]: vb for kb, vb in cast(Iterator[tuple[bytes, bytes]], entry[0].items())}

    def raw_state_names(self) -> list[str]:
        """See ``KeyedStateBackend.raw_state_names``."""
        return list(self._raw_stored)

    def _clear_raw(self) -> None:
        self._raw_present.clear()
        for name in list(self._raw_stored):
            entry = self._raw_cf(name, create=False)
            if entry is not None:
                entry[0].delete_range(b"", _KEY_SPACE_END, self._write_opts)

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
            self.flush()  # (drops the deletes it wrote from the caches)
            total = sum(len(t._cache) for t in tables)
            keep = self.cache_entries // 2
            if total > keep:
                for t in tables:
                    t._evict_to(len(t._cache) * keep // total)
        self._set_limits()

    def cached_entries(self) -> int:
        """Entries held in the caches now (clean and dirty)."""
        return sum(len(t._cache) for t in self._tables.values())

    def dirty_entries(self) -> int:
        """Entries written to the caches and not yet to the DB (whether a checkpoint's overlay holds them or not)."""
        return sum(len(t._unwritten()) for t in self._tables.values())

    def flush(self) -> None:
        """Brings the DB up to date on the mailbox thread: applies the write-outs still queued from earlier
        checkpoints (taking the native checkpoints they want, in order), then writes every dirty cache entry.
        Written values stay cached, clean; written deletes leave the cache (the cache is for live entries: a later
        read of such a key asks the DB, whose bloom filter answers a miss cheaply).

        Raises:
            TypeError: a value cannot be pickled (the entry stays dirty).
            RuntimeError: the backend is closed.
        """
        self._open_db()
        item = (self._capture(None) if self._raw_later or any(t._dirty or t._held for t in self._tables.values())
                else None)
        self._drain(item if item is not None else (self._queue[-1] if self._queue else None))
        self._reap()

    def _capture(self, checkpoint_dir: str | None) -> _WriteOut:
        """Moves every dirty entry into a new write-out at the end of the queue (the entries become clean: their
        values are pickled now, since they may be changed in place later; a delete travels as ``_ABSENT``, which
        pickles as itself). Deleted entries keep their ``_ABSENT`` marker in the cache until the write-out is
        applied (``_reap``), so reads never ask a DB that still holds the old value. Cheap on purpose (the mailbox
        thread waits for it): C-level copies and one ``dumps`` per ``_CHUNK`` values.

        Raises:
            TypeError: a value cannot be pickled (nothing is captured, every entry stays dirty).
        """
        steps: list[tuple[RocksDBTable, list[tuple[Any, Any]], bytes]] = []
        captured: list[RocksDBTable] = []
        written: list[tuple[RocksDBTable, list[tuple[Any, Any]], list[Any]]] = []
        dumps = _dumps
        for t in self._tables.values():
            if not t._dirty and not t._held:
                continue
            keys = t._unwritten()
            values = list(map(t._cache.__getitem__, keys))
            try:
                for i in range(0, len(values), _CHUNK):
                    steps.append((t, keys[i : i + _CHUNK], dumps(values[i : i + _CHUNK], _PROTOCOL)))
            except Exception as e:
                raise _unpicklable(t.name, keys, values, e) from e
            captured.append(t)
            written.append((t, keys, values))
        self._before_tracking(written)
        for t, keys, values in written:
            self._track_written(t, keys, values)
        for t in captured:  # (cleared in place: ``hot_path`` callers hold these sets)
            t._dirty.clear()
            t._held.clear()
            t._new.clear()  # written by this write-out: no longer "never in the DB"
        item = _WriteOut(steps, self._take_raw_later(), checkpoint_dir)
        self._queue.append(item)
        for t in captured:
            if t._delete_item is _PENDING_ITEM:
                t._delete_item = item
        return item

    def _capture_checkpoint(self, checkpoint_dir: str) -> tuple[_WriteOut, list[tuple[str, list[Any], bytes]]]:
        """A checkpoint's capture: ``(write-out, overlay)``. The overlay holds every entry changed since the last
        checkpoint (``_dirty``), values pickled now, in chunks ``(table, keys, pickle of their values)``; those
        entries stay in the cache, not written, and become ``_held``. The write-out holds the entries the last
        checkpoint's overlay held and nothing changed since (``_held - _dirty``): an entry rides in at most two
        overlays' worth of time before it reaches the DB, so an overlay never grows past what changed in one
        interval. Entries created and deleted between two checkpoints (a window's contents) never reach the DB.

        Raises:
            TypeError: a value cannot be pickled (nothing is captured, no set changes).
        """
        steps: list[tuple[RocksDBTable, list[tuple[Any, Any]], bytes]] = []
        overlay: list[tuple[str, list[Any], bytes]] = []
        captured: list[tuple[RocksDBTable, list[tuple[Any, Any]], list[Any]]] = []
        dumps = _dumps
        for t in self._tables.values():
            dirty, held = t._dirty, t._held
            if not dirty and not held:
                continue
            cache = t._cache
            stale = t._stale() if held else []
            keys = stale
            values = stale_values = list(map(cache.__getitem__, stale))
            try:
                for i in range(0, len(stale), _CHUNK):
                    steps.append((t, stale[i : i + _CHUNK], dumps(values[i : i + _CHUNK], _PROTOCOL)))
                keys = list(dirty)
                values = list(map(cache.__getitem__, keys))
                for i in range(0, len(keys), _OVERLAY_CHUNK):
                    overlay.append((t.name, keys[i : i + _OVERLAY_CHUNK], dumps(values[i : i + _OVERLAY_CHUNK],
                                                                                _PROTOCOL)))
            except Exception as e:
                raise _unpicklable(t.name, keys, values, e) from e
            captured.append((t, stale, stale_values))
        self._before_tracking([c for c in captured if c[1]])
        for t, stale, stale_values in captured:
            if stale:
                self._track_written(t, stale, stale_values)
                t._new.difference_update(stale)  # written by this write-out
            t._held = set(t._dirty)
            t._dirty.clear()  # (in place: ``hot_path`` callers hold this set)
        item = _WriteOut(steps, self._take_raw_later(), checkpoint_dir)
        self._queue.append(item)
        for t, _, _ in captured:
            if t._delete_item is _PENDING_ITEM:
                t._delete_item = item
        return item, overlay

    def _before_tracking(self, written: list[tuple[RocksDBTable, list[tuple[Any, Any]], list[Any]]]) -> None:
        """Before a capture writes entries of a table the DB holds nothing of: applies the queued write-outs.
        While ``db_empty`` a deleted entry is forgotten without an absent marker; once it is False again, a read
        asks the DB, which must not still hold a value a queued delete is about to remove. (Rare: only a table
        whose written entries were all deleted again gets here with a queue.)"""
        for t, _, _ in written:
            d = t._delete_item
            if t.db_empty and d is not None and not d.written:
                self._drain(d)

    def _track_written(self, t: RocksDBTable, keys: list[tuple[Any, Any]], values: list[Any]) -> None:
        """A write-out of ``t``'s ``keys`` (puts, deletes where the value is the absent marker) was captured: keeps
        ``t._in_db`` and ``t.db_empty`` (True again once every entry written is deleted again)."""
        in_db = t._in_db
        if in_db is None:
            t.db_empty = False
            return
        absent = _ABSENT
        for k, v in zip(keys, values, strict=True):
            if v is absent:
                in_db.discard(k)
                t._delete_item = _PENDING_ITEM  # (set to the write-out once it exists)
            else:
                in_db.add(k)
        if len(in_db) > self.cache_entries:  # (a set as large as the state: stop knowing)
            t._in_db = None
            t.db_empty = False
        elif not in_db:
            t.db_empty = True
            t._new.clear()  # (every entry is "new" now)
        else:
            t.db_empty = False

    def _drain(self, upto: _WriteOut | None) -> None:
        """Applies queued write-outs in order, up to and including ``upto`` (None: none), each followed by the
        native checkpoint it wants; blocking. Called by upload threads and by the mailbox thread.

        Raises:
            RuntimeError: the backend was closed before ``upto`` was applied, or it was dropped by ``dispose``.
            Exception: a DB write failed; the step stays to be applied by the next drain.
        """
        if upto is None:
            return
        with self._write_lock:
            self._left_to_upload = False
            while not upto.done:
                if upto.cancelled:
                    raise RuntimeError("the RocksDB state backend was disposed before the snapshot was written")
                db = self._db
                if db is None or not self._queue:
                    raise RuntimeError(f"the RocksDB state backend at {self.path} is closed")
                item = self._queue[0]
                while not item.written:
                    self._apply_step(db, item)
                self._finish(db, item)

    def advance_write_out(self, max_entries: int = _CHUNK) -> None:
        """Mailbox thread, between records: applies up to about ``max_entries`` entries of the queued write-outs,
        so that a checkpoint's write-out is done by the thread that owns the GIL most of the time, in slices too
        small to hold records up, rather than by an upload thread that gets the GIL only now and then. Never waits:
        returns at once when nothing is queued, when another thread is writing, or at a write-out whose native
        checkpoint is due (its upload thread takes it). Operators that never call it lose nothing: the upload then
        applies the write-out itself.
        """
        q = self._queue
        if not q or not self._write_lock.acquire(blocking=False):
            return
        try:
            self._advancing = True
            db = self._db
            budget = max_entries
            while q and budget > 0 and db is not None:
                item = q[0]
                if not item.written:
                    if item.next >= len(item.steps) and any(callable(op[1]) for op in item.raw):
                        self._left_to_upload = True  # (see ``_await_write_out``)
                        break
                    budget -= self._apply_step(db, item)
                elif item.checkpoint_dir is None:
                    self._finish(db, item)
                else:
                    break
        finally:
            self._write_lock.release()
        with self._progress:
            self._progress.notify_all()
        self._reap()

    def _apply_step(self, db: Rdict, item: _WriteOut) -> int:
        """Applies the next step of ``item`` (the raw writes after the last); the entries it wrote. Holds
        ``_write_lock``."""
        if item.next < len(item.steps):
            t, keys, blob = item.steps[item.next]
            enc, dumps, absent, h = self._write_encode, _dumps, _ABSENT, t._cfh
            deleted: list[tuple[Any, Any]] = []
            wb = WriteBatch(raw_mode=True)
            for k, v in zip(keys, _loads(blob), strict=True):
                if v is absent:
                    wb.delete(enc(k), h)
                    deleted.append(k)
                else:
                    wb.put(enc(k), dumps(v, _PROTOCOL), h)
            db.write(wb, self._write_opts)
            if deleted:
                item.deleted.append((t, deleted))
            item.steps[item.next] = _DONE_STEP  # (its pickle is in the DB now)
            item.next += 1
            self._steps_applied += 1
            return len(keys)
        n = 0
        for op in item.raw:
            n += self._apply_raw(db, op)
        item.raw = []
        item.written = True
        self._steps_applied += 1
        return n

    def _finish(self, db: Rdict, item: _WriteOut) -> None:
        """Takes the native checkpoint ``item`` wants (its writes are applied) and moves it out of the queue.
        Holds ``_write_lock``."""
        with item.lock:
            d = item.checkpoint_dir
            if d is not None and self._raw_lost:
                # a raw state write before this checkpoint was lost: the DB holds an older value, so no
                # checkpoint can be made of it until the state is written again
                item.error = RuntimeError("raw keyed state could not be written: " + "; ".join(
                    f"{name!r}: {why}" for name, why in self._raw_lost.items()))
                d = None
            if d is not None:
                try:
                    # the memtables first, one column family at a time: rocksdict releases the GIL in a flush but
                    # not in create_checkpoint, which would flush them itself (measured: docs/performance.md)
                    for t in list(self._tables.values()):
                        t._cf.flush(True)
                    for cf, _ in list(self._raw.values()):
                        cf.flush(True)
                    Checkpoint(db).create_checkpoint(d)
                    item.made = True
                except Exception as e:  # noqa: BLE001 - the snapshot's upload reports it
                    shutil.rmtree(d, ignore_errors=True)
                    item.error = e
            item.done = True
        self._queue.popleft()
        item.steps = []
        self._written.append(item)

    def _reap(self) -> None:
        """Mailbox thread: drops the deletes of applied write-outs from the caches (unless deleted again since)."""
        written = self._written
        absent = _ABSENT
        while written:
            item = written.popleft()
            for t, deleted in item.deleted:
                cache, dirty, held = t._cache, t._dirty, t._held
                for k in deleted:
                    if cache.get(k) is absent and k not in dirty and k not in held:
                        del cache[k]

    def _await_write_out(self, item: _WriteOut) -> str:
        """Upload thread: waits until ``item`` (and every write-out before it) is applied; its checkpoint dir.

        Raises:
            RuntimeError: the backend was closed or disposed first, or RocksDB could not make the checkpoint.
        """
        if self._advancing:
            # the mailbox thread applies write-outs between records: wait while it makes progress, then take the
            # checkpoint (or write the rest here when it stopped, e.g. no records came)
            last = -1
            with self._progress:
                while (not item.written and not item.done and not item.cancelled and self._steps_applied != last
                       and not self._left_to_upload):
                    last = self._steps_applied
                    self._progress.wait(_UPLOAD_PATIENCE_S)
        self._drain(item)
        with item.lock:
            d, made, error = item.checkpoint_dir, item.made, item.error
        if error is not None:
            raise RuntimeError(f"RocksDB cannot create a checkpoint of {self.path} in {d}: {error}") from error
        if d is None or not made:
            raise RuntimeError(f"the native checkpoint of {self.path} was given up")
        return d

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

    # -- checkpoints ----------------------------------------------------------------------------------------

    def snapshot(
        self, checkpoint_id: int, key_groups: range, local_dir: str, canonical: bool = False
    ) -> PendingSnapshot:
        """The synchronous part of a checkpoint. A checkpoint is a native RocksDB checkpoint plus an *overlay*:
        the entries changed since the last checkpoint, captured here (values pickled now) and kept in the cache
        unwritten; restore writes the overlay over the DB. The entries the last overlay held and nothing changed
        since are captured into a write-out queued behind any earlier one (see ``_capture_checkpoint``). ``upload``
        (another thread) waits for that write-out, takes a native checkpoint (hard links) into a new dir in
        ``local_dir`` and uploads its files: SST files once under the shared prefix, reused by later checkpoints
        while they are live and this backend's last *completed* checkpoint (``notify_checkpoint_complete``) or
        restored state holds them; the other files, and the overlay, under the private prefix every time. With
        ``canonical``, every unwritten entry goes into the write-out and the key groups of ``key_groups`` are
        written as a key-group file instead (savepoints).

        Why an overlay: most entries of a streaming job change again or go away before long (a window's contents
        live for one window), so writing them to the DB at every checkpoint, and deleting them soon after, was
        most of a checkpoint's cost; an overlay is one pickle per chunk of entries, and the upload writes it as one
        file.

        Invariants: the native checkpoint plus the overlay hold exactly the state at this call (write-outs, raw
        state writes and cache overflows that come later reach the DB only after the native checkpoint); reads in
        the meantime see the latest values (the cache keeps captured entries, deletes as absent markers, until
        applied; eviction waits for them); a snapshot discarded or failed still has its writes applied, in order,
        by the next drain (a later upload, ``flush``, ``close``), and its overlay's entries stay in the cache
        until written.

        ``local_dir`` should be on the database's file system (else RocksDB copies the files) and outside the
        database directory.

        Raises:
            RuntimeError: the backend is closed.
            TypeError: a cached value cannot be pickled (nothing is captured).
        """
        db = self._open_db()
        self._reap()
        meta: dict[str, Any] = {
            "checkpoint_id": checkpoint_id,
            "tables": _stored_kinds(db),
            "table_names": list(self._stored),
        }
        os.makedirs(local_dir, exist_ok=True)
        directory = os.path.join(
            os.path.abspath(local_dir), f"rocksdb-{self._instance_id}-{checkpoint_id}-{uuid.uuid4().hex[:8]}"
        )
        pending: _Pending
        if canonical:
            item = self._capture(directory)
            pending = _CanonicalSnapshot(self, checkpoint_id, key_groups, directory, meta, item, local_dir)
        else:
            item, overlay = self._capture_checkpoint(directory)
            with self._snap_lock:
                base = self._confirmed
            pending = _IncrementalSnapshot(self, checkpoint_id, key_groups, directory, meta, item, base, overlay)
        with self._snap_lock:
            self._pending.append(pending)
        return pending

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Its SST files become the ones later checkpoints reuse; older snapshots not uploaded yet are discarded."""
        with self._snap_lock:
            entry = self._uploaded.get(checkpoint_id)
            if entry is not None and (self._confirmed_id is None or checkpoint_id > self._confirmed_id):
                self._confirmed_id = checkpoint_id
                self._confirmed = entry
            for c in [c for c in self._uploaded if c <= checkpoint_id]:
                del self._uploaded[c]
            # savepoints are left alone: one may still be uploaded after a later checkpoint completed
            stale = [p for p in self._pending if p.checkpoint_id < checkpoint_id and p.kind != KIND_CANONICAL]
        for p in stale:
            p.discard()

    def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        """Forgets what the checkpoint uploaded (never reused) and discards it if it was not uploaded yet."""
        with self._snap_lock:
            self._uploaded.pop(checkpoint_id, None)
            stale = [p for p in self._pending if p.checkpoint_id == checkpoint_id]
        for p in stale:
            p.discard()

    def _upload_done(self, pending: _Pending, base_uri: str | None, ssts: dict[str, StateFile] | None) -> None:
        """Called by an upload thread when it finished (successfully when ``ssts`` is not None)."""
        with self._snap_lock:
            if pending in self._pending:
                self._pending.remove(pending)
            if ssts is not None and base_uri is not None and pending.instance_id == self._instance_id:
                self._uploaded[pending.checkpoint_id] = (base_uri, ssts)

    def _is_empty(self) -> bool:
        self.flush()
        for name in list(self._stored):
            for _ in self.table(name)._cf.keys():  # noqa: SIM118 - an Rdict, not a dict
                return False
        return not any(self.read_raw_state(name) for name in list(self._raw_stored))

    def restore(
        self, handles: list[KeyedStateHandle], storage: CheckpointStorage, key_groups: range, local_dir: str
    ) -> None:
        """Loads the entries of ``key_groups`` from ``handles``; see ``KeyedStateBackend.restore``.

        When the only handle holding key groups of ``key_groups`` is a ``rocksdb-incremental`` one of exactly
        ``key_groups`` (same parallelism), its files become the database (and its SST files are reused by the next
        checkpoints). Otherwise every handle's files are downloaded and checked
        first, then the entries of ``key_groups`` are written in batches; a failure then leaves the backend empty.
        """
        plan = plan_restore(handles, key_groups, self.max_parallelism)
        self._open_db()
        if not self._is_empty():
            raise ValueError(f"restore needs an empty backend: the RocksDB state at {self.path} holds state already")
        self._check_registered(plan.kinds)
        if (
            len(plan.handles) == 1
            and plan.handles[0].kind == KIND_ROCKSDB_INCREMENTAL
            and plan.handles[0].key_group_range == key_groups
        ):
            self._restore_native(plan.handles[0], storage, local_dir)
            return
        dirs: list[str] = []
        try:
            for h in plan.handles:
                dirs.append(download_handle(storage, h, local_dir))
            for name in plan.table_names:
                self.table(name)
            for name, (kind, ttl) in plan.kinds.items():
                self._check_kind(name, kind, bool(ttl))
            for h, d in zip(plan.handles, dirs, strict=True):
                uri = storage.uri(h.files[0].path) if h.files else "?"
                if h.kind == KIND_ROCKSDB_INCREMENTAL:
                    overlay = read_overlay(d, uri)
                    self._write_raw(iter_db_dir_raw(d, key_groups))
                    self._apply_overlay(overlay, key_groups)
                else:
                    self._write_entries(iter_downloaded(h, d, uri, key_groups))
                self._write_raw_state(iter_downloaded_raw(h, d, uri, key_groups))
            self._learn_db_keys()
        except BaseException:
            for name in list(self._stored):
                self.table(name).clear()
            self._clear_raw()
            raise
        finally:
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
            for t in self._tables.values():
                t._cache.clear()  # it may remember absences from before the restore

    def _learn_db_keys(self) -> None:
        """After a restore: a table whose column family holds at most ``cache_entries`` entries learns their keys
        (``_in_db``), so that it knows when it is empty again (a window job's restored windows fire and go, and it
        gets its fast loop back); a larger one is left not knowing (the scan stops there)."""
        limit = self.cache_entries
        for name in list(self._stored):
            t = self.table(name)
            keys: set[tuple[Any, Any]] = set()
            complete = True
            for kb in cast(Iterator[bytes], t._cf.keys()):  # noqa: SIM118 - an Rdict
                if len(keys) >= limit:
                    complete = False
                    break
                _, key, ns = decode_db_key(kb)
                keys.add((key, ns))
            t._in_db = keys if complete else None
            t.db_empty = complete and not keys

    _BATCH = 20_000

    def _write_raw(self, entries: Iterable[tuple[str, bytes, bytes]]) -> None:
        """Writes raw ``(table, DB key, value pickle)`` entries in batches, bypassing the cache."""
        db = self._open_db()
        wb = WriteBatch(raw_mode=True)
        n = 0
        for name, kb, vb in entries:
            t = self.table(name)
            t.db_empty, t._in_db = False, None
            wb.put(kb, vb, t._cfh)
            n += 1
            if n >= self._BATCH:
                db.write(wb, self._write_opts)
                wb = WriteBatch(raw_mode=True)
                n = 0
        if n:
            db.write(wb, self._write_opts)

    def _write_raw_state(self, values: Iterable[tuple[str, int, bytes]]) -> None:
        """Adds restored raw keyed state ``(name, key group, value)`` (key groups of several handles add up)."""
        self._raw_present.clear()
        db = self._open_db()
        wb = WriteBatch(raw_mode=True)
        n = 0
        for name, kg, value in values:
            entry = self._raw_cf(name, create=True)
            assert entry is not None
            wb.put(_KG.pack(kg), value, entry[1])
            n += 1
        if n:
            db.write(wb, self._write_opts)

    def _apply_overlay(self, overlay: Overlay, key_groups: range) -> None:
        """Writes a checkpoint's overlay (its entries of ``key_groups``) over the DB, bypassing the cache."""
        db = self._open_db()
        enc, dumps, absent, unpack = self._encode, _dumps, _ABSENT, _KG.unpack_from
        for name, keys, values in overlay:
            t = self.table(name)
            t.db_empty, t._in_db = False, None
            h = t._cfh
            wb = WriteBatch(raw_mode=True)
            for k, v in zip(keys, values, strict=True):
                kb = enc(k)
                if unpack(kb)[0] not in key_groups:
                    continue
                if v is absent:
                    wb.delete(kb, h)
                else:
                    wb.put(kb, dumps(v, _PROTOCOL), h)
            db.write(wb, self._write_opts)

    def _write_entries(self, entries: Iterable[tuple[str, Any, Any, Any]]) -> None:
        enc = self._encode

        def raw() -> Iterator[tuple[str, bytes, bytes]]:
            for name, key, ns, v in entries:
                yield name, enc((key, ns)), _dumps(v, _PROTOCOL)

        self._write_raw(raw())

    def _restore_native(self, handle: KeyedStateHandle, storage: CheckpointStorage, local_dir: str) -> None:
        """Makes the handle's files the database (the fast path of ``restore``)."""
        d = download_handle(storage, handle, local_dir)
        try:
            overlay = read_overlay(d, storage.uri(handle.files[0].path) if handle.files else "?")
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        db = self._open_db()
        for t in self._tables.values():
            t._cf.close()
            t._cf = _CLOSED_CF
            t._cfh = None
            t._cache.clear()
            t._dirty.clear()
            t._held.clear()
            t._new.clear()
        self._close_raw()
        db.close()
        self._db = None
        try:
            shutil.rmtree(self.path, ignore_errors=True)
            shutil.move(d, self.path)
            self._open()
        except BaseException as e:
            shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(self.path, ignore_errors=True)
            self._open()  # an empty database again
            self._rebind_tables()
            if isinstance(e, RuntimeError):
                where = ", ".join(storage.uri(f.path) for f in handle.files if not f.shared)
                raise CorruptStateError(
                    f"the RocksDB files of the checkpoint ({where}, ...) cannot be opened: {e}"
                ) from e
            raise
        self._rebind_tables()
        for name, h in self._handles.items():
            self._check_kind(name, h.kind, h.ttl_config is not None)
        self._apply_overlay(overlay, handle.key_group_range)
        self._learn_db_keys()
        local_names: dict[str, str] = handle.meta["local_names"]
        with self._snap_lock:
            self._instance_id = uuid.uuid4().hex[:16]  # new names: new files may reuse the restored files' numbers
            self._uploaded.clear()
            self._confirmed_id = None
            self._confirmed = (storage.base_uri, {local_names[f.path]: f for f in handle.files if f.shared})

    def _rebind_tables(self) -> None:
        """Points the tables at the column families of a newly opened database."""
        db = self._open_db()
        for name, t in self._tables.items():
            cf_name = _CF_PREFIX + name
            if name in self._stored:
                t._cf = db.get_column_family(cf_name)
            else:
                t._cf = db.create_column_family(cf_name, self._opts)
                self._stored.append(name)
            t._cfh = db.get_column_family_handle(cf_name)
            t.db_empty, t._in_db = False, None  # (a restored database)
        if self._tables:
            self._set_limits()

    # -- life cycle -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Writes the caches and the memtables to disk and closes the database. Idempotent."""
        if self._closed:
            return
        self.flush()  # (applies queued write-outs, taking their native checkpoints: their uploads may go on)
        self._write_lock.acquire()  # an upload thread may be checking its write-out: let it finish first
        try:
            self._close_db()
        finally:
            self._write_lock.release()

    def _close_db(self) -> None:
        db = self._open_db()
        for t in self._tables.values():
            t._cf.flush(True)
            t._cf.close()
            t._cf = _CLOSED_CF
            t._cfh = None
            t._cache.clear()
        for cf, _ in self._raw.values():
            cf.flush(True)
        self._close_raw()
        db.flush(True)
        self._tables.clear()
        self._handles.clear()
        db.close()
        self._db = None
        self._closed = True

    def dispose(self) -> None:
        """Closes the database and deletes its directory (and local files of snapshots not being uploaded)."""
        with self._snap_lock:
            pending = list(self._pending)
        for p in pending:
            p.discard()
        if not self._closed:
            # nothing needs writing: skip the flush and the queued write-outs, just release the DB
            with self._write_lock:
                for item in self._queue:
                    item.cancelled = True
                    item.give_up_checkpoint()
                self._queue.clear()
            for t in self._tables.values():
                t._dirty.clear()
            self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<RocksDBKeyedStateBackend {self.path} tables={self.table_names()}>"


# ---------------------------------------------------------------------------------------------------------------
# Pending snapshots
# ---------------------------------------------------------------------------------------------------------------


class _Pending:
    """A checkpoint's write-out, waiting in the backend's queue, and the native RocksDB checkpoint its application
    makes in ``directory``; uploaded (or discarded) by the task.

    ``upload`` waits for the write-out (applying it and the ones before it when no other thread does), then uploads
    the checkpoint's files. ``discard`` gives up the native checkpoint but not the writes.
    """

    kind = ""

    def __init__(
        self,
        backend: RocksDBKeyedStateBackend,
        checkpoint_id: int,
        key_groups: range,
        directory: str,
        meta: dict[str, Any],
        item: _WriteOut,
    ) -> None:
        self.checkpoint_id = checkpoint_id
        self.key_groups = key_groups
        self.directory = directory
        self.meta = meta
        self._item = item
        self.instance_id = backend._instance_id
        self.max_parallelism = backend.max_parallelism
        self._backend = backend
        self._lock = threading.Lock()
        self._state = "ready"

    def upload(self, storage: CheckpointStorage, private_prefix: str, shared_prefix: str) -> KeyedStateHandle:
        """See ``state.snapshot.PendingSnapshot.upload``."""
        with self._lock:
            if self._state != "ready":
                raise RuntimeError(
                    f"the snapshot of checkpoint {self.checkpoint_id} cannot be uploaded: it is {self._state}"
                )
            self._state = "uploading"
        ssts: dict[str, StateFile] | None = None
        ok = False
        try:
            self._backend._await_write_out(self._item)
            handle, ssts = self._upload(storage, private_prefix, shared_prefix)
            ok = True
            return handle
        finally:
            with self._lock:
                self._state = "uploaded" if ok else "failed"
            self._item.give_up_checkpoint()  # (when the write-out failed, a later drain must not make it)
            shutil.rmtree(self.directory, ignore_errors=True)
            self._backend._upload_done(self, storage.base_uri, ssts)

    def _upload(
        self, storage: CheckpointStorage, private_prefix: str, shared_prefix: str
    ) -> tuple[KeyedStateHandle, dict[str, StateFile] | None]:
        """The handle, and the SST files later checkpoints may reuse once it completes (None: not reusable)."""
        raise NotImplementedError

    def discard(self) -> None:
        """See ``state.snapshot.PendingSnapshot.discard``."""
        with self._lock:
            if self._state != "ready":
                return
            self._state = "discarded"
        self._item.give_up_checkpoint()  # the writes stay queued: the next drain applies them, in order
        self._backend._upload_done(self, None, None)

    def _name(self, local_name: str) -> str:
        return f"{self.instance_id}-{self.checkpoint_id}-{local_name}"


class _IncrementalSnapshot(_Pending):
    kind = KIND_ROCKSDB_INCREMENTAL

    def __init__(
        self,
        backend: RocksDBKeyedStateBackend,
        checkpoint_id: int,
        key_groups: range,
        directory: str,
        meta: dict[str, Any],
        item: _WriteOut,
        base: tuple[str, dict[str, StateFile]] | None,
        overlay: list[tuple[str, list[Any], bytes]],
    ) -> None:
        super().__init__(backend, checkpoint_id, key_groups, directory, meta, item)
        self.base = base
        self.overlay = overlay

    def discard(self) -> None:
        super().discard()
        self.overlay = []

    def _upload(
        self, storage: CheckpointStorage, private_prefix: str, shared_prefix: str
    ) -> tuple[KeyedStateHandle, dict[str, StateFile] | None]:
        base = self.base[1] if self.base is not None and self.base[0] == storage.base_uri else {}
        files: list[StateFile] = []
        local_names: dict[str, str] = {}
        ssts: dict[str, StateFile] = {}
        written: list[str] = []
        uploaded = 0
        d = self.directory
        local = sorted((n, os.path.getsize(os.path.join(d, n))) for n in os.listdir(d))
        try:
            for name, size in local:
                shared = _is_shared_file(name)
                sf = base.get(name) if shared else None
                if sf is None or sf.size != size:
                    path = join_path(shared_prefix if shared else private_prefix, self._name(name))
                    written.append(path)
                    n = storage.upload_file(os.path.join(self.directory, name), path)
                    if n != size:
                        raise CorruptStateError(f"uploading {storage.uri(path)} wrote {n} bytes, expected {size}")
                    sf = StateFile(path, n, shared)
                    uploaded += n
                if shared:
                    ssts[name] = sf
                files.append(sf)
                local_names[sf.path] = name
            overlay, self.overlay = self.overlay, []
            if overlay:
                # (the keys are pickled here, off the mailbox thread: keys are immutable, values were pickled at
                # the barrier)
                chunks = [(name, _dumps(keys, _PROTOCOL), blob) for name, keys, blob in overlay]
                data = _dumps((_OVERLAY_FORMAT, chunks), _PROTOCOL)
                del overlay, chunks
                path = join_path(private_prefix, self._name(_OVERLAY_NAME))
                written.append(path)
                storage.write(path, data)
                files.append(StateFile(path, len(data), False))
                local_names[path] = _OVERLAY_NAME
                uploaded += len(data)
        except BaseException:
            for path in written:  # nothing references them: best effort
                with contextlib.suppress(Exception):
                    storage.delete(path)
            raise
        handle = KeyedStateHandle(
            kind=KIND_ROCKSDB_INCREMENTAL,
            key_groups=(self.key_groups.start, self.key_groups.stop),
            max_parallelism=self.max_parallelism,
            files=files,
            meta={**self.meta, "local_names": local_names},
            uploaded_bytes=uploaded,
        )
        return handle, ssts


class _CanonicalSnapshot(_Pending):
    kind = KIND_CANONICAL

    def __init__(
        self,
        backend: RocksDBKeyedStateBackend,
        checkpoint_id: int,
        key_groups: range,
        directory: str,
        meta: dict[str, Any],
        item: _WriteOut,
        local_dir: str,
    ) -> None:
        super().__init__(backend, checkpoint_id, key_groups, directory, meta, item)
        self.local_dir = local_dir

    def _blobs(self) -> Iterator[tuple[int, bytes]]:
        loads, dumps = _loads, _dumps
        with _open_read_only(self.directory) as (_, cfs):
            for kg in self.key_groups:
                tables: list[tuple[str, list[tuple[Any, Any, Any]]]] = []
                for name, cf in cfs.items():
                    entries: list[tuple[Any, Any, Any]] = []
                    for kb, vb in _scan(cf, kg, kg + 1):
                        _, key, ns = decode_db_key(kb)
                        entries.append((key, ns, loads(vb)))
                    if entries:
                        tables.append((name, entries))
                if tables:
                    yield kg, dumps(tables, _PROTOCOL)

    def _raw_values(self) -> Iterator[tuple[str, int, bytes]]:
        yield from iter_db_dir_raw_state(self.directory, self.key_groups)

    def _upload(
        self, storage: CheckpointStorage, private_prefix: str, shared_prefix: str
    ) -> tuple[KeyedStateHandle, dict[str, StateFile] | None]:
        handle = upload_key_group_blobs(
            storage,
            self._blobs(),
            join_path(private_prefix, self._name("keyed.state")),
            self.local_dir,
            KIND_CANONICAL,
            self.key_groups,
            self.max_parallelism,
            self.meta,
            self._raw_values(),
        )
        return handle, None
