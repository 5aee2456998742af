"""weir.graph.jobgraph.compile_job_graph through the public DataStream API (env.get_job_graph)."""

from __future__ import annotations

import pickle

import pytest

from weir.datastream import KeySelector, StreamExecutionEnvironment
from weir.datastream.connectors import NumberSequenceSource
from weir.graph.deployment import input_channel_counts, producer_channels
from weir.graph.jobgraph import USER_CODE, GraphError, JobGraph, JobVertex, topology


def make_env(parallelism: int = 2) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    return env


def numbers(env: StreamExecutionEnvironment, name: str = "nums"):
    """A parallel source (takes the environment's parallelism, unlike from_collection)."""
    return env.from_source(NumberSequenceSource(0, 99), source_name=name)


def kinds(v: JobVertex) -> list[str]:
    return [op.kind for op in v.operators]


def check_invariants(g: JobGraph) -> None:
    """Structural invariants every compiled graph must satisfy."""
    pos = {v.id: i for i, v in enumerate(g.vertices)}
    assert len(pos) == len(g.vertices), "vertex ids must be unique"
    for i, e in enumerate(g.edges):
        assert e.index == i
        assert e.index in g.vertex(e.source).outputs
        assert e.index in g.vertex(e.target).inputs
        assert pos[e.source] < pos[e.target], "vertices must be in topological order"
    for v in g.vertices:
        for ei in v.inputs:
            assert g.edges[ei].target == v.id
        for ei in v.outputs:
            assert g.edges[ei].source == v.id
        assert v.name == " -> ".join(op.name for op in v.operators)


def by_kinds(g: JobGraph, ks: list[str]) -> JobVertex:
    matches = [v for v in g.vertices if kinds(v) == ks]
    assert len(matches) == 1, f"expected one vertex with operators {ks}, got {[kinds(v) for v in g.vertices]}"
    return matches[0]


def test_forward_connected_equal_parallelism_is_one_chain():
    env = make_env(2)
    numbers(env).map(lambda x: x + 1).filter(lambda x: x % 2 == 0).print()
    g = env.get_job_graph("chained")
    check_invariants(g)
    assert g.name == "chained"
    assert len(g.vertices) == 1
    assert g.edges == []
    v = g.vertices[0]
    assert kinds(v) == ["source", "map", "filter", "sink"]
    assert v.parallelism == 2
    assert v.is_source
    assert v.name == "Source: nums -> Map -> Filter -> Sink: Print to Std. Out"


def test_operator_specs_carry_user_functions_and_names():
    env = make_env(1)
    f = lambda x: x * 3  # noqa: E731
    numbers(env).map(f).name("triple").uid("u-triple").print()
    g = env.get_job_graph()
    (v,) = g.vertices
    op = v.operators[1]
    assert (op.kind, op.name, op.uid) == ("map", "triple", "u-triple")
    assert op.fn is f


@pytest.mark.parametrize(
    ("partition", "expected_kind"),
    [
        (lambda ds: ds.key_by(lambda x: x % 3), "hash"),
        (lambda ds: ds.rebalance(), "rebalance"),
        (lambda ds: ds.broadcast(), "broadcast"),
        (lambda ds: ds.shuffle(), "shuffle"),
    ],
)
def test_no_chaining_across_partitioning(partition, expected_kind):
    env = make_env(2)
    partition(numbers(env).map(lambda x: x)).map(lambda x: x).print()
    g = env.get_job_graph()
    check_invariants(g)
    assert len(g.vertices) == 2
    up, down = g.vertices
    assert kinds(up) == ["source", "map"]
    assert kinds(down) == ["map", "sink"]
    assert up.parallelism == down.parallelism == 2
    (e,) = g.edges
    assert (e.source, e.target) == (up.id, down.id)
    assert e.partitioner.kind == expected_kind
    if expected_kind == "hash":
        assert e.partitioner.key_selector is not None
    else:
        assert e.partitioner.key_selector is None


def test_keyed_operator_gets_key_selector_and_hash_edge():
    class ByMod(KeySelector):
        def get_key(self, value):
            return value % 5

    env = make_env(2)
    ks = ByMod()
    numbers(env).key_by(ks).reduce(lambda a, b: a + b).print()
    g = env.get_job_graph()
    check_invariants(g)
    src, red = g.vertices
    assert kinds(red) == ["reduce", "sink"]
    assert red.operators[0].key_selector is ks
    (e,) = g.edges
    assert e.partitioner.kind == "hash" and e.partitioner.key_selector is ks


def test_last_partitioning_before_the_consumer_wins():
    env = make_env(2)
    numbers(env).key_by(lambda x: x).rebalance().map(lambda x: x).print()
    g = env.get_job_graph()
    (e,) = g.edges
    assert e.partitioner.kind == "rebalance"


def test_parallelism_change_breaks_chain_with_default_rebalance():
    env = make_env(2)
    numbers(env).map(lambda x: x).set_parallelism(3).print()
    g = env.get_job_graph()
    check_invariants(g)
    src, m, sink = g.vertices
    assert (kinds(src), kinds(m), kinds(sink)) == (["source"], ["map"], ["sink"])
    assert (src.parallelism, m.parallelism, sink.parallelism) == (2, 3, 2)
    assert [e.partitioner.kind for e in g.edges] == ["rebalance", "rebalance"]
    assert [(g.edges[0].source, g.edges[0].target), (g.edges[1].source, g.edges[1].target)] == [
        (src.id, m.id),
        (m.id, sink.id),
    ]


def test_equal_parallelism_set_explicitly_still_chains():
    env = make_env(2)
    numbers(env).set_parallelism(3).map(lambda x: x).set_parallelism(3).print().set_parallelism(3)
    g = env.get_job_graph()
    (v,) = g.vertices
    assert kinds(v) == ["source", "map", "sink"]
    assert v.parallelism == 3


def test_explicit_forward_with_equal_parallelism_chains():
    env = make_env(2)
    numbers(env).forward().map(lambda x: x).print()
    g = env.get_job_graph()
    (v,) = g.vertices
    assert kinds(v) == ["source", "map", "sink"]


def test_explicit_forward_with_parallelism_change_raises():
    env = make_env(2)
    numbers(env, "fwd-src").forward().map(lambda x: x).name("wide-map").set_parallelism(3).print()
    with pytest.raises(GraphError, match="forward") as ei:
        env.get_job_graph()
    msg = str(ei.value)
    assert "fwd-src" in msg and "wide-map" in msg


def test_union_gives_consumer_one_input_edge_per_stream():
    env = make_env(2)
    a = numbers(env, "a")
    b = numbers(env, "b")
    c = env.from_collection([1, 2, 3])  # parallelism 1: its edge is a rebalance
    a.union(b, c).map(lambda x: x).print()
    g = env.get_job_graph()
    check_invariants(g)
    m = by_kinds(g, ["map", "sink"])
    assert len(m.inputs) == 3
    sources = {g.vertex(g.edges[i].source).name: g.edges[i].partitioner.kind for i in m.inputs}
    assert sources == {"Source: a": "forward", "Source: b": "forward", "Source: Collection Source": "rebalance"}
    # union inputs are never chained into the consumer, even when forward with equal parallelism
    assert len(g.vertices) == 4


def test_union_with_itself_gives_two_edges():
    env = make_env(2)
    src = numbers(env)
    src.union(src).map(lambda x: x).print()
    g = env.get_job_graph()
    check_invariants(g)
    s = by_kinds(g, ["source"])
    m = by_kinds(g, ["map", "sink"])
    assert [(g.edges[i].source, g.edges[i].target) for i in m.inputs] == [(s.id, m.id)] * 2


def test_channel_counts_per_edge_kind():
    env = make_env(2)
    src = numbers(env)
    src.map(lambda x: x).set_parallelism(3).print().set_parallelism(3)  # rebalance 2 -> 3
    src.filter(lambda x: True).print()  # forward 2 -> 2
    g = env.get_job_graph()
    check_invariants(g)
    m = by_kinds(g, ["map", "sink"])
    f = by_kinds(g, ["filter", "sink"])
    (em,) = m.inputs
    (ef,) = f.inputs
    assert g.edges[em].partitioner.kind == "rebalance"
    assert g.edges[ef].partitioner.kind == "forward"
    # each consumer subtask hears from every producer subtask, except on forward edges
    assert input_channel_counts(g, m.id) == [(em, 2)]
    assert input_channel_counts(g, f.id) == [(ef, 1)]
    assert [producer_channels(g, em, p) for p in range(2)] == [[0, 1, 2], [0, 1, 2]]
    assert [producer_channels(g, ef, p) for p in range(2)] == [[0], [1]]


def test_source_with_two_consumers_is_not_chained():
    env = make_env(2)
    src = numbers(env)
    src.map(lambda x: x).print()
    src.filter(lambda x: True).print()
    g = env.get_job_graph()
    check_invariants(g)
    s = by_kinds(g, ["source"])
    m = by_kinds(g, ["map", "sink"])
    f = by_kinds(g, ["filter", "sink"])
    assert len(s.outputs) == 2
    assert {g.edges[i].target for i in s.outputs} == {m.id, f.id}
    assert all(g.edges[i].partitioner.kind == "forward" for i in s.outputs)


def test_disable_chaining_isolates_the_operator():
    env = make_env(2)
    numbers(env).map(lambda x: x).disable_chaining().filter(lambda x: True).print()
    g = env.get_job_graph()
    check_invariants(g)
    assert [kinds(v) for v in g.vertices] == [["source"], ["map"], ["filter", "sink"]]
    assert [e.partitioner.kind for e in g.edges] == ["forward", "forward"]


def test_disable_chaining_on_sink():
    env = make_env(1)
    numbers(env).map(lambda x: x).print().disable_chaining()
    g = env.get_job_graph()
    assert [kinds(v) for v in g.vertices] == [["source", "map"], ["sink"]]


def test_start_new_chain_only_breaks_before_the_operator():
    env = make_env(2)
    numbers(env).map(lambda x: x).start_new_chain().filter(lambda x: True).print()
    g = env.get_job_graph()
    assert [kinds(v) for v in g.vertices] == [["source"], ["map", "filter", "sink"]]


def test_from_collection_has_parallelism_one():
    env = make_env(4)
    ds = env.from_collection([1, 2, 3])
    assert ds.get_parallelism() == 1
    ds.map(lambda x: x).print()
    g = env.get_job_graph()
    check_invariants(g)
    src, rest = g.vertices
    assert kinds(src) == ["source"] and src.parallelism == 1
    assert kinds(rest) == ["map", "sink"] and rest.parallelism == 4
    (e,) = g.edges
    assert e.partitioner.kind == "rebalance"


def test_slots_needed_is_the_widest_vertex():
    env = make_env(2)
    numbers(env).map(lambda x: x).set_parallelism(5).rebalance().map(lambda x: x).set_parallelism(3).print()
    g = env.get_job_graph()
    assert sorted(v.parallelism for v in g.vertices) == [2, 2, 3, 5]
    assert g.slots_needed == 5


def test_slots_needed_single_vertex():
    env = make_env(3)
    numbers(env).print()
    assert env.get_job_graph().slots_needed == 3


def test_no_sinks_raises():
    env = make_env(1)
    numbers(env).map(lambda x: x)  # built, but nothing consumes it
    with pytest.raises(GraphError, match="no sinks"):
        env.get_job_graph()


def test_parallelism_above_max_parallelism_raises():
    env = make_env(1)
    env.set_max_parallelism(4)
    numbers(env).map(lambda x: x).name("too-wide").set_parallelism(8).print()
    with pytest.raises(GraphError, match="too-wide"):
        env.get_job_graph()


def test_graph_settings_propagate():
    env = make_env(2)
    env.set_max_parallelism(64)
    env.set_buffer_timeout(25)
    env.get_config().set_string("pipeline.name", "x")
    numbers(env).print()
    g = env.get_job_graph()
    assert g.max_parallelism == 64
    assert all(v.max_parallelism == 64 for v in g.vertices)
    assert g.buffer_timeout_ms == 25
    assert g.config == {"pipeline.name": "x"}


def test_operator_max_parallelism_is_honoured():
    env = make_env(2)
    numbers(env).key_by(lambda x: x).reduce(lambda a, b: a + b).set_max_parallelism(16).print()
    g = env.get_job_graph()
    red = by_kinds(g, ["reduce", "sink"])
    assert red.max_parallelism == 16


def test_topology_strips_user_code_and_pickles_with_plain_pickle():
    env = make_env(2)
    key = lambda x: x % 7  # noqa: E731
    numbers(env).map(lambda x: x + 1).key_by(key).reduce(lambda a, b: a + b).set_parallelism(3).print()
    g = env.get_job_graph("topo")
    # the real graph holds lambdas: plain pickle cannot carry it
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(g)

    t = pickle.loads(pickle.dumps(topology(g)))
    check_invariants(t)
    assert t.name == "topo"
    assert t.max_parallelism == g.max_parallelism
    assert t.slots_needed == g.slots_needed == 3
    assert [(v.id, v.name, v.parallelism, v.inputs, v.outputs) for v in t.vertices] == [
        (v.id, v.name, v.parallelism, v.inputs, v.outputs) for v in g.vertices
    ]
    assert [[(o.kind, o.name, o.transformation_id) for o in v.operators] for v in t.vertices] == [
        [(o.kind, o.name, o.transformation_id) for o in v.operators] for v in g.vertices
    ]
    assert all(o.fn is None and o.key_selector is None and o.params == {} for v in t.vertices for o in v.operators)
    assert [(e.index, e.source, e.target, e.partitioner.kind) for e in t.edges] == [
        (e.index, e.source, e.target, e.partitioner.kind) for e in g.edges
    ]
    hash_edges = [e for e in t.edges if e.partitioner.kind == "hash"]
    assert len(hash_edges) == 1 and hash_edges[0].partitioner.key_selector == USER_CODE
    # the original graph is untouched
    assert any(o.fn is not None for v in g.vertices for o in v.operators if o.kind == "map")
    assert [e.partitioner.key_selector for e in g.edges if e.partitioner.kind == "hash"] == [key]
