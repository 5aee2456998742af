"""Buffer framing: every message on a data-plane or worker-control connection is one frame.

A frame is a 9-byte header -- payload length (u32), kind (u8), channel id (u32), big-endian -- and the payload.
Records travel as DATA frames whose payload is one pickled buffer (protocol 5) of many records; the receiver
unpickles a buffer once. Between two columnar operators (``map_batches``/``filter_batches``) on a keyless edge, a
buffer travels as a COLUMNS frame instead: Arrow IPC (``weir.common.columnar.encode_ipc``), decoded by the consuming
task into columns without making records. Control frames carry small pickled objects.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

HEADER = struct.Struct("!IBI")
HEADER_SIZE = HEADER.size
MAX_FRAME = 1 << 30  # a single buffer larger than this means a corrupt stream, not a big record

HELLO = 0  # payload: pickled sender identity
OPEN = 1  # payload: pickled ChannelKey; channel id chosen by the sender
DATA = 2  # payload: pickled (values, timestamps | None)
END = 3  # end of partition: no more data on this channel
CREDIT = 4  # payload: u32 number of buffers the receiver grants
CONTROL = 5  # worker <-> TaskManager control message, payload pickled
FAIL = 6  # receiver side failed the channel's consumer: payload pickled reason (sender stops)
EVENT = 7  # in-band event, ordered with the data: payload pickled (name, value), e.g. ("wm", 1000), ("idle", True)
COLUMNS = 8  # a data buffer as columns: pickled (RecordShape, timestamps | None) + one Arrow IPC stream (see above)
MAX_KIND = COLUMNS

_CREDIT = struct.Struct("!I")


class FrameError(Exception):
    """The byte stream does not hold a valid frame (wrong peer, or corruption)."""


def encode(kind: int, channel: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(len(payload), kind, channel) + payload


def encode_obj(kind: int, channel: int, obj: Any) -> bytes:
    return encode(kind, channel, pickle.dumps(obj, protocol=5))


def encode_credit(channel: int, n: int) -> bytes:
    return encode(CREDIT, channel, _CREDIT.pack(n))


def decode_credit(payload: bytes) -> int:
    return int(_CREDIT.unpack(payload)[0])


def decode_header(header: bytes) -> tuple[int, int, int]:
    """(length, kind, channel) of a header; raises FrameError for an impossible one."""
    length, kind, channel = HEADER.unpack(header)
    if kind > MAX_KIND or length > MAX_FRAME:
        raise FrameError(f"invalid frame header (kind={kind}, length={length}): is the peer a weir worker?")
    return length, kind, channel


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """Read one frame: (kind, channel, payload). Raises asyncio.IncompleteReadError at end of stream."""
    length, kind, channel = decode_header(await reader.readexactly(HEADER_SIZE))
    payload = await reader.readexactly(length) if length else b""
    return kind, channel, payload


class FrameDecoder:
    """Incremental decoder for a byte stream (used where bytes arrive in arbitrary pieces)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        self._buf += data
        out = []
        while len(self._buf) >= HEADER_SIZE:
            length, kind, channel = decode_header(bytes(self._buf[:HEADER_SIZE]))
            if len(self._buf) < HEADER_SIZE + length:
                break
            out.append((kind, channel, bytes(self._buf[HEADER_SIZE : HEADER_SIZE + length])))
            del self._buf[: HEADER_SIZE + length]
        return out
