"""The RocksDB backend keeps memory bounded: 2,000,000 keys written through it with a 100,000-entry cache must
not grow this process's resident memory by more than ~300 MB (the same keys in the hashmap backend take far
more), and every key must read back. No daemons: this only needs a real RocksDB on local disk."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest

from state.rocksdb import RocksDBKeyedStateBackend
from weir.datastream.state import ValueStateDescriptor

pytestmark = pytest.mark.integration

KEYS = 2_000_000
LIMIT_MB = 300


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_two_million_keys_in_bounded_memory(tmp_path: Path) -> None:
    gc.collect()
    start = _rss_mb()
    t0 = time.perf_counter()
    b = RocksDBKeyedStateBackend(tmp_path / "db", cache_entries=100_000)
    v = b.get_state(ValueStateDescriptor("v"))
    peak = 0.0
    for i in range(KEYS):
        b.current_key = f"user-{i}"
        v.update((i, "payload-" + "x" * 20))
        if i % 100_000 == 0:
            peak = max(peak, _rss_mb() - start)
            assert b.cached_entries() <= 100_000
    b.flush()
    peak = max(peak, _rss_mb() - start)
    # every key reads back (sampled across the whole range, most from the DB, not the cache)
    for i in range(0, KEYS, 997):
        b.current_key = f"user-{i}"
        assert v.value() == (i, "payload-" + "x" * 20), i
    b.current_key = f"user-{KEYS}"
    assert v.value() is None
    peak = max(peak, _rss_mb() - start)
    elapsed = time.perf_counter() - t0
    print(f"\n{KEYS:,} keys written and sampled in {elapsed:.1f} s; peak RSS growth {peak:.0f} MB")
    b.dispose()
    assert peak < LIMIT_MB, f"RSS grew by {peak:.0f} MB writing {KEYS:,} keys (limit {LIMIT_MB} MB)"
