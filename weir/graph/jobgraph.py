"""Compilation of transformations into a JobGraph: operator chains (vertices) joined by partitioned edges.

The JobGraph is pure data. It travels from the client to the JobManager and on to the TaskManagers with
cloudpickle, carrying the user's functions (and, pickled by value, the job file's own module).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from weir.graph.transformation import TWO_INPUT_KINDS, PartitionerSpec, Transformation

DEFAULT_MAX_PARALLELISM = 128


class GraphError(ValueError):
    """The job's plan cannot run as built; the message says what to change."""


@dataclass
class OperatorSpec:
    """One operator of a chain: what the TaskManager instantiates (``taskmanager.operators``)."""

    kind: str
    name: str
    transformation_id: int
    uid: str | None = None
    fn: Any = None
    key_selector: Any = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobEdge:
    """A network edge between two vertices; ``index`` is its position in the graph's edge list."""

    index: int
    source: str
    target: str
    partitioner: PartitionerSpec
    target_input: int = 0  # 1: the second input of a two-input operator
    side_output: str | None = None  # tag id when the edge carries a side output
    source_operator: int = -1  # transformation id of the producing operator inside the source vertex


@dataclass
class JobVertex:
    """A chain of operators run by ``parallelism`` subtasks; the first operator is the head."""

    id: str
    name: str
    parallelism: int
    max_parallelism: int
    operators: list[OperatorSpec]
    inputs: list[int] = field(default_factory=list)  # edge indices
    outputs: list[int] = field(default_factory=list)  # edge indices

    @property
    def is_source(self) -> bool:
        return self.operators[0].kind == "source"


@dataclass
class JobGraph:
    """Vertices in topological order and the edges between them."""

    name: str
    vertices: list[JobVertex]
    edges: list[JobEdge]
    max_parallelism: int = DEFAULT_MAX_PARALLELISM
    buffer_timeout_ms: int = 10
    config: dict[str, str] = field(default_factory=dict)

    def vertex(self, vertex_id: str) -> JobVertex:
        for v in self.vertices:
            if v.id == vertex_id:
                return v
        raise KeyError(vertex_id)

    @property
    def slots_needed(self) -> int:
        """Slot sharing: one subtask of every vertex may share a slot, so the widest vertex decides."""
        return max(v.parallelism for v in self.vertices)


@dataclass
class _Input:
    node: Transformation
    partitioner: PartitionerSpec | None
    side_output: str | None
    input_index: int


def _physical_inputs(t: Transformation) -> list[_Input]:
    """Resolve virtual nodes: the physical producers feeding ``t``, with each edge's partitioner, side output
    tag and logical input (0, or 1 for the second input of a two-input operator)."""
    out: list[_Input] = []

    def walk(node: Transformation, part: PartitionerSpec | None, tag: str | None, idx: int) -> None:
        if node.kind == "partition":
            # the partition closest to the consumer wins, as in Flink
            walk(node.inputs[0], part or node.partitioner, tag, idx)
        elif node.kind == "union":
            for i in node.inputs:
                walk(i, part, tag, idx)
        elif node.kind == "side_output":
            walk(node.inputs[0], part, node.params["tag"], idx)
        else:
            out.append(_Input(node, part, tag, idx))

    two_input = t.kind in TWO_INPUT_KINDS
    for i, inp in enumerate(t.inputs):
        walk(inp, None, None, i if two_input else 0)
    return out


def compile_job_graph(
    sinks: list[Transformation],
    job_name: str,
    default_parallelism: int,
    max_parallelism: int = DEFAULT_MAX_PARALLELISM,
    buffer_timeout_ms: int = 10,
    config: dict[str, str] | None = None,
) -> JobGraph:
    """Compile the plan reachable from ``sinks`` into a JobGraph.

    Operators are chained when the edge between them is forward, parallelisms are equal, the producer has
    no other consumer and neither side disabled chaining. An edge without an explicit partitioner is forward
    when parallelisms match and rebalance otherwise (Flink's rule).

    Raises:
        GraphError: no sinks, an explicit forward edge between different parallelisms, a bad parallelism.
    """
    if not sinks:
        raise GraphError("no sinks defined in the job: add print(), sink_to(), add_sink() or execute_and_collect()")
    if max_parallelism < 1:
        raise GraphError(f"max parallelism must be >= 1, got {max_parallelism}")

    # collect physical nodes in topological order (inputs before consumers)
    order: list[Transformation] = []
    seen: set[int] = set()

    def visit(t: Transformation) -> None:
        if t.id in seen:
            return
        seen.add(t.id)
        for i in t.inputs:
            visit(i)
        if not t.is_virtual:
            order.append(t)

    for s in sinks:
        visit(s)

    def parallelism_of(t: Transformation) -> int:
        p = t.parallelism if t.parallelism is not None else default_parallelism
        if t.kind == "source" and getattr(t.fn, "is_bounded_parallelism_one", False):
            p = 1
        if p < 1:
            raise GraphError(f"parallelism of {t.name!r} must be >= 1, got {p}")
        mp = t.max_parallelism or max_parallelism
        if p > mp:
            raise GraphError(
                f"parallelism {p} of {t.name!r} exceeds its max parallelism {mp}: "
                "raise it with set_max_parallelism(...)"
            )
        return p

    par = {t.id: parallelism_of(t) for t in order}
    inputs = {t.id: _physical_inputs(t) for t in order}
    consumers: dict[int, list[int]] = defaultdict(list)  # main-output consumers only
    for t in order:
        for inp in inputs[t.id]:
            if inp.side_output is None:
                consumers[inp.node.id].append(t.id)

    resolved: dict[int, list[_Input]] = {}
    for t in order:
        lst = []
        for inp in inputs[t.id]:
            src, part = inp.node, inp.partitioner
            if part is None:
                part = PartitionerSpec("forward" if par[src.id] == par[t.id] else "rebalance")
            elif part.kind == "forward" and par[src.id] != par[t.id]:
                raise GraphError(
                    f"forward partitioning does not allow a change of parallelism: {src.name!r} has "
                    f"{par[src.id]}, {t.name!r} has {par[t.id]}; use rebalance() or equal parallelism"
                )
            lst.append(_Input(src, part, inp.side_output, inp.input_index))
        resolved[t.id] = lst

    def chainable(t: Transformation) -> bool:
        ins = resolved[t.id]
        if len(ins) != 1 or t.kind == "source" or t.kind in TWO_INPUT_KINDS or ins[0].side_output is not None:
            return False
        src, part = ins[0].node, ins[0].partitioner
        assert part is not None
        return (
            part.kind == "forward"
            and par[src.id] == par[t.id]
            and len(consumers[src.id]) == 1
            and t.chaining
            and not t.start_new_chain
            and src.chaining
            and src.kind not in ("sink", "collect")
        )

    chain_of: dict[int, int] = {}  # transformation id -> chain head id
    chains: dict[int, list[Transformation]] = {}
    for t in order:
        if chainable(t):
            head = chain_of[resolved[t.id][0].node.id]
            chain_of[t.id] = head
            chains[head].append(t)
        else:
            chain_of[t.id] = t.id
            chains[t.id] = [t]

    vertices: list[JobVertex] = []
    vid: dict[int, str] = {}
    for t in order:
        if chain_of[t.id] != t.id:
            continue
        members = chains[t.id]
        v = JobVertex(
            id=f"v{len(vertices)}",
            name=" -> ".join(m.name for m in members),
            parallelism=par[t.id],
            # an operator's own max parallelism (key groups of its keyed state) wins over the job's
            max_parallelism=next((m.max_parallelism for m in members if m.max_parallelism), max_parallelism),
            operators=[
                OperatorSpec(
                    kind=m.kind,
                    name=m.name,
                    transformation_id=m.id,
                    uid=m.uid,
                    fn=m.fn,
                    key_selector=m.key_selector,
                    params=dict(m.params),
                )
                for m in members
            ],
        )
        vid[t.id] = v.id
        vertices.append(v)
    by_id = {v.id: v for v in vertices}

    edges: list[JobEdge] = []
    for t in order:
        if chain_of[t.id] != t.id:
            continue
        for inp in resolved[t.id]:
            src_vertex = by_id[vid[chain_of[inp.node.id]]]
            assert inp.partitioner is not None
            e = JobEdge(index=len(edges), source=src_vertex.id, target=vid[t.id], partitioner=inp.partitioner,
                        target_input=inp.input_index, side_output=inp.side_output, source_operator=inp.node.id)
            edges.append(e)
            src_vertex.outputs.append(e.index)
            by_id[e.target].inputs.append(e.index)

    return JobGraph(
        name=job_name,
        vertices=vertices,
        edges=edges,
        max_parallelism=max_parallelism,
        buffer_timeout_ms=buffer_timeout_ms,
        config=dict(config or {}),
    )


USER_CODE = "<user code>"


def topology(graph: JobGraph) -> JobGraph:
    """A copy of ``graph`` without user code: what the JobManager reads (it never runs job code)."""
    import copy

    g = copy.copy(graph)
    g.vertices = [
        JobVertex(
            id=v.id,
            name=v.name,
            parallelism=v.parallelism,
            max_parallelism=v.max_parallelism,
            operators=[OperatorSpec(kind=o.kind, name=o.name, transformation_id=o.transformation_id, uid=o.uid)
                       for o in v.operators],
            inputs=list(v.inputs),
            outputs=list(v.outputs),
        )
        for v in graph.vertices
    ]
    g.edges = [
        JobEdge(e.index, e.source, e.target,
                PartitionerSpec(e.partitioner.kind, USER_CODE if e.partitioner.kind == "hash" else None),
                e.target_input, e.side_output, e.source_operator)
        for e in graph.edges
    ]
    return g
