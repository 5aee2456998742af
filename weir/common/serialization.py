"""``pyflink.common.serialization``: encoders for file sinks."""

from __future__ import annotations

from typing import Any


class Encoder:
    """Turns a record into bytes for a row-format file."""

    def __init__(self, encode: Any) -> None:
        self._encode = encode

    def encode(self, value: Any) -> bytes:
        return self._encode(value)  # type: ignore[no-any-return]

    @staticmethod
    def simple_string_encoder(charset_name: str = "UTF-8") -> Encoder:
        return Encoder(lambda v: (str(v) + "\n").encode(charset_name))
