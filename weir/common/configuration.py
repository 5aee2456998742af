"""PyFlink's ``Configuration``: a string-keyed map with typed getters."""

from __future__ import annotations

from typing import Any


class Configuration:
    """Key/value configuration. Values are stored as given; typed getters convert on read."""

    def __init__(self, other: Configuration | None = None) -> None:
        self._data: dict[str, Any] = dict(other._data) if other is not None else {}

    def get_string(self, key: str, default_value: str | None = None) -> str | None:
        v = self._data.get(key)
        return default_value if v is None else str(v)

    def set_string(self, key: str, value: str) -> Configuration:
        self._data[key] = str(value)
        return self

    def get_integer(self, key: str, default_value: int = 0) -> int:
        v = self._data.get(key)
        return default_value if v is None else int(v)

    def set_integer(self, key: str, value: int) -> Configuration:
        self._data[key] = int(value)
        return self

    def get_float(self, key: str, default_value: float = 0.0) -> float:
        v = self._data.get(key)
        return default_value if v is None else float(v)

    def set_float(self, key: str, value: float) -> Configuration:
        self._data[key] = float(value)
        return self

    def get_boolean(self, key: str, default_value: bool = False) -> bool:
        v = self._data.get(key)
        if v is None:
            return default_value
        if isinstance(v, str):
            return v.strip().lower() in ("true", "1", "yes", "on")
        return bool(v)

    def set_boolean(self, key: str, value: bool) -> Configuration:
        self._data[key] = bool(value)
        return self

    def contains_key(self, key: str) -> bool:
        return key in self._data

    def remove_config(self, key: str) -> bool:
        return self._data.pop(key, None) is not None

    def key_set(self) -> set[str]:
        return set(self._data)

    def add_all(self, other: Configuration, prefix: str | None = None) -> Configuration:
        for k, v in other._data.items():
            self._data[(prefix or "") + k] = v
        return self

    def to_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in self._data.items()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Configuration) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Configuration({self._data!r})"
