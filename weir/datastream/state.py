"""Keyed state descriptors and state handles (``pyflink.datastream.state``).

A state handle is bound to its operator; every access reads or writes the entry of the key the operator is
processing now (the current key), so user code never names the key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class StateDescriptor:
    def __init__(self, name: str, type_info: Any = None) -> None:
        if not name:
            raise ValueError("a state descriptor needs a non-empty name")
        self.name = name
        self.type_info = type_info

    def get_name(self) -> str:
        return self.name


class ValueStateDescriptor(StateDescriptor):
    def __init__(self, name: str, value_type_info: Any = None) -> None:
        super().__init__(name, value_type_info)


class State(ABC):
    @abstractmethod
    def clear(self) -> None: ...


class ValueState(State):
    @abstractmethod
    def value(self) -> Any: ...

    @abstractmethod
    def update(self, value: Any) -> None: ...
