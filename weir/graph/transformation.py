"""The logical plan a job author builds: one Transformation per API call.

Physical transformations (sources, operators, sinks) become operators in the job graph; virtual ones
(``partition`` for key_by/rebalance/shuffle/broadcast/forward, ``union``) only shape the edges between them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count()

TWO_INPUT_KINDS = frozenset({"co_map", "co_flat_map", "co_process", "keyed_co_process"})
PHYSICAL_KINDS = frozenset(
    {"source", "map", "flat_map", "filter", "process", "keyed_process", "reduce", "sink", "collect", "timestamps",
     "window"}
) | TWO_INPUT_KINDS | frozenset({"map_batches", "filter_batches", "aggregate_batches"})  # columnar (vectorized)
VIRTUAL_KINDS = frozenset({"partition", "union", "side_output"})


@dataclass(frozen=True)
class PartitionerSpec:
    """How records of an edge are distributed over the consumer's subtasks.

    kind is one of forward, hash, rebalance, shuffle, broadcast. ``key_selector`` is set for hash.
    """

    kind: str
    key_selector: Any = None

    def __post_init__(self) -> None:
        if self.kind not in ("forward", "hash", "rebalance", "shuffle", "broadcast"):
            raise ValueError(f"unknown partitioner {self.kind!r}")
        if (self.kind == "hash") != (self.key_selector is not None):
            raise ValueError("a hash partitioner needs a key selector, and only it")


@dataclass(eq=False)
class Transformation:
    """One node of the logical plan.

    Attributes:
        kind: physical (``PHYSICAL_KINDS``) or virtual (``VIRTUAL_KINDS``).
        fn: the user function, source or sink object the operator runs.
        key_selector: for keyed operators, the key selector of the KeyedStream they were applied to.
        partitioner: for ``partition`` nodes, how the records are routed to the next operator.
        params: operator parameters (e.g. the print sink's identifier).
        parallelism: None until set; the environment's default applies at compilation.
    """

    kind: str
    name: str
    inputs: list[Transformation] = field(default_factory=list)
    fn: Any = None
    key_selector: Any = None
    partitioner: PartitionerSpec | None = None
    params: dict[str, Any] = field(default_factory=dict)
    parallelism: int | None = None
    max_parallelism: int | None = None
    uid: str | None = None
    output_type: Any = None
    chaining: bool = True  # False: chains with neither its input nor its consumers (disable_chaining)
    start_new_chain: bool = False  # True: does not chain with its input, its consumers may chain to it
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def is_virtual(self) -> bool:
        return self.kind in VIRTUAL_KINDS
