"""The public state API: descriptors, StateTtlConfig and its builder, state backend choices (PyFlink's names)."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest

from weir.common.time import Duration, Time
from weir.datastream.functions import ReduceFunction
from weir.datastream.state import (
    AggregatingState,
    AggregatingStateDescriptor,
    ListState,
    ListStateDescriptor,
    MapState,
    MapStateDescriptor,
    ReducingState,
    ReducingStateDescriptor,
    State,
    StateDescriptor,
    StateTtlConfig,
    ValueState,
    ValueStateDescriptor,
)
from weir.datastream.state_backend import EmbeddedRocksDBStateBackend, HashMapStateBackend, StateBackend


class Max(ReduceFunction):
    def reduce(self, value1: int, value2: int) -> int:
        return max(value1, value2)


class Count:
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: object, acc: int) -> int:
        return acc + 1

    def get_result(self, acc: int) -> int:
        return acc


def test_builder_chain_from_pyflink() -> None:
    cfg = (
        StateTtlConfig.new_builder(Time.seconds(1))
        .set_update_type(StateTtlConfig.UpdateType.OnReadAndWrite)
        .set_state_visibility(StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp)
        .set_ttl(Time.seconds(5))
        .update_ttl_on_create_and_write()
        .update_ttl_on_read_and_write()
        .return_expired_if_not_cleaned_up()
        .never_return_expired()
        .cleanup_full_snapshot()
        .cleanup_incrementally(10, True)
        .cleanup_in_rocksdb_compact_filter(500)
        .disable_cleanup_in_background()
        .build()
    )
    assert cfg.get_ttl() == Time.seconds(5)
    assert cfg.get_update_type() is StateTtlConfig.UpdateType.OnReadAndWrite
    assert cfg.get_state_visibility() is StateTtlConfig.StateVisibility.NeverReturnExpired
    assert cfg.get_ttl_time_characteristic() is StateTtlConfig.TtlTimeCharacteristic.ProcessingTime
    assert cfg.is_enabled()
    cs = cfg.get_cleanup_strategies()
    assert not cs.is_cleanup_in_background()
    assert cs.in_full_snapshot()
    inc = cs.get_incremental_cleanup_strategy()
    assert inc is not None and inc.get_cleanup_size() == 10 and inc.run_cleanup_for_every_record()
    cf = cs.get_rocksdb_compact_filter_cleanup_strategy()
    assert cf is not None and cf.get_query_time_after_num_entries() == 500
    assert cf.get_periodic_compaction_time() == Duration.of_days(30)


def test_builder_defaults_are_flinks() -> None:
    cfg = StateTtlConfig.new_builder(Time.minutes(1)).build()
    assert cfg.get_ttl().to_milliseconds() == 60_000
    assert cfg.get_update_type() is StateTtlConfig.UpdateType.OnCreateAndWrite
    assert cfg.get_state_visibility() is StateTtlConfig.StateVisibility.NeverReturnExpired
    cs = cfg.get_cleanup_strategies()
    assert cs.is_cleanup_in_background() and not cs.in_full_snapshot()
    # with cleanup in background on, the default strategies apply
    inc = cs.get_incremental_cleanup_strategy()
    assert inc is not None and inc.get_cleanup_size() == 5 and not inc.run_cleanup_for_every_record()
    cf = cs.get_rocksdb_compact_filter_cleanup_strategy()
    assert cf is not None and cf.get_query_time_after_num_entries() == 1000
    off = StateTtlConfig.new_builder(Time.minutes(1)).disable_cleanup_in_background().build()
    assert off.get_cleanup_strategies().get_incremental_cleanup_strategy() is None
    assert off.get_cleanup_strategies().get_rocksdb_compact_filter_cleanup_strategy() is None


@pytest.mark.parametrize("bad", [Time(0), Time(-5), Duration.of_millis(0), 0, -1])
def test_ttl_must_be_positive(bad: object) -> None:
    with pytest.raises(ValueError, match="positive"):
        StateTtlConfig.new_builder(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        StateTtlConfig.new_builder(Time.seconds(1)).set_ttl(bad)  # type: ignore[arg-type]


def test_ttl_type_errors_are_clear() -> None:
    with pytest.raises(TypeError, match="Time"):
        StateTtlConfig.new_builder("10s")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="UpdateType"):
        StateTtlConfig.new_builder(Time.seconds(1)).set_update_type("OnReadAndWrite")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="StateVisibility"):
        StateTtlConfig.new_builder(Time.seconds(1)).set_state_visibility(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cleanup_size"):
        StateTtlConfig.new_builder(Time.seconds(1)).cleanup_incrementally(0, False)
    with pytest.raises(TypeError, match="StateTtlConfig"):
        ValueStateDescriptor("v").enable_time_to_live(Time.seconds(1))  # type: ignore[arg-type]


def test_ttl_accepts_duration_and_int_millis() -> None:
    assert StateTtlConfig.new_builder(Duration.of_seconds(2)).build().get_ttl() == Time(2000)  # type: ignore[arg-type]
    assert StateTtlConfig.new_builder(250).build().get_ttl() == Time(250)  # type: ignore[arg-type]


def test_enum_members() -> None:
    assert [m.name for m in StateTtlConfig.UpdateType] == ["Disabled", "OnCreateAndWrite", "OnReadAndWrite"]
    assert [m.name for m in StateTtlConfig.StateVisibility] == ["ReturnExpiredIfNotCleanedUp", "NeverReturnExpired"]
    assert [m.name for m in StateTtlConfig.TtlTimeCharacteristic] == ["ProcessingTime"]


def test_disabled_update_type_disables_ttl() -> None:
    cfg = StateTtlConfig.new_builder(Time.seconds(1)).set_update_type(StateTtlConfig.UpdateType.Disabled).build()
    assert not cfg.is_enabled()
    d = ValueStateDescriptor("v")
    d.enable_time_to_live(cfg)
    assert d.get_ttl_config() is None


def test_descriptors() -> None:
    v = ValueStateDescriptor("v", "INT")
    assert v.get_name() == "v" and v.name == "v" and v.type_info == "INT"
    assert v.get_ttl_config() is None
    cfg = StateTtlConfig.new_builder(Time.seconds(3)).build()
    v.enable_time_to_live(cfg)
    assert v.get_ttl_config() is cfg
    lst = ListStateDescriptor("l", "STRING")
    assert lst.elem_type_info == "STRING"
    m = MapStateDescriptor("m", "STRING", "LONG")
    assert (m.key_type_info, m.value_type_info) == ("STRING", "LONG")
    r1 = ReducingStateDescriptor("r", Max(), "INT")
    assert r1.reducer()(3, 7) == 7
    r2 = ReducingStateDescriptor("r", lambda a, b: a * b)
    assert r2.reducer()(3, 7) == 21
    a = AggregatingStateDescriptor("a", Count(), "LONG")
    assert isinstance(a.get_agg_function(), Count)
    for d in (v, lst, m, r1, a):
        assert isinstance(d, StateDescriptor)


def test_descriptor_errors() -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        ValueStateDescriptor("")
    with pytest.raises(TypeError, match="ReduceFunction or a callable"):
        ReducingStateDescriptor("r", 42)
    with pytest.raises(TypeError, match="create_accumulator"):
        AggregatingStateDescriptor("a", object())

    class Partial:
        def create_accumulator(self) -> int:
            return 0

        def add(self, v: int, acc: int) -> int:
            return acc

    with pytest.raises(TypeError, match="get_result"):
        AggregatingStateDescriptor("a", Partial())


def test_descriptors_and_config_survive_pickling() -> None:
    cfg = (
        StateTtlConfig.new_builder(Time.seconds(3))
        .update_ttl_on_read_and_write()
        .cleanup_incrementally(3, False)
        .cleanup_in_rocksdb_compact_filter(7)
        .build()
    )
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert pickle.loads(pickle.dumps(cfg)) != StateTtlConfig.new_builder(Time.seconds(3)).build()
    d = ReducingStateDescriptor("r", lambda a, b: a + b)
    d.enable_time_to_live(cfg)
    d2 = cloudpickle.loads(cloudpickle.dumps(d))  # functions ship descriptors with the job
    assert d2.get_name() == "r" and d2.get_ttl_config() == cfg and d2.reducer()(1, 2) == 3


def test_state_interfaces_are_abstract() -> None:
    for cls in (State, ValueState, ListState, MapState, ReducingState, AggregatingState):
        with pytest.raises(TypeError):
            cls()  # type: ignore[abstract]


def test_state_backend_choices() -> None:
    h = HashMapStateBackend()
    r = EmbeddedRocksDBStateBackend()
    assert (h.name, r.name) == ("hashmap", "rocksdb")
    assert isinstance(h, StateBackend) and isinstance(r, StateBackend)
    assert r.is_incremental_checkpoints_enabled()  # weir's default
    assert not EmbeddedRocksDBStateBackend(enable_incremental_checkpointing=False).is_incremental_checkpoints_enabled()
    assert EmbeddedRocksDBStateBackend(True).is_incremental_checkpoints_enabled()
    with pytest.raises(TypeError):
        EmbeddedRocksDBStateBackend("yes")  # type: ignore[arg-type]
    r.set_db_storage_paths("/tmp/a", "/tmp/b")
    r.set_number_of_transfer_threads(2)
    assert r.get_db_storage_paths() == ["/tmp/a", "/tmp/b"]
    assert r.get_number_of_transfer_threads() == 2
    with pytest.raises(ValueError):
        r.set_number_of_transfer_threads(0)
    for b in (h, r):
        c = pickle.loads(pickle.dumps(b))
        assert c == b and c.name == b.name and type(c) is type(b)
    assert pickle.loads(pickle.dumps(r)).get_db_storage_paths() == ["/tmp/a", "/tmp/b"]
    assert r != EmbeddedRocksDBStateBackend()
    assert repr(h) == "HashMapStateBackend()" and "enable_incremental_checkpointing=None" in repr(r)
