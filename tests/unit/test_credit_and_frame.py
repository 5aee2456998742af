"""taskmanager.network.credit (credit-based flow control) and taskmanager.network.frame (framing)."""

from __future__ import annotations

import asyncio
import pickle
import random

import pytest

from taskmanager.network import frame
from taskmanager.network.credit import ChannelClosedError, ReceiverCredit, SenderCredit
from taskmanager.network.frame import FrameDecoder, FrameError


async def _yield_loop(times: int = 3) -> None:
    """Let other tasks run up to their next suspension point (not a wait on time)."""
    for _ in range(times):
        await asyncio.sleep(0)


# ---- SenderCredit ----


def test_try_spend_uses_granted_credit_only():
    c = SenderCredit()
    assert c.try_spend() is False
    c.grant(2)
    assert c.available == 2
    assert c.try_spend() is True
    assert c.try_spend() is True
    assert c.try_spend() is False
    assert c.available == 0


@pytest.mark.parametrize("n", [0, -1])
def test_grant_must_be_positive(n):
    with pytest.raises(ValueError):
        SenderCredit().grant(n)


def test_spend_waits_until_grant():
    async def main():
        c = SenderCredit()
        task = asyncio.create_task(c.spend())
        await _yield_loop()
        assert not task.done(), "spend must block without credit"
        c.grant(3)
        await task
        assert c.available == 2
        # with credit, spend returns without blocking
        await asyncio.wait_for(c.spend(), timeout=1)
        assert c.available == 1

    asyncio.run(main())


def test_fail_wakes_waiting_sender_with_the_error():
    async def main():
        c = SenderCredit()
        task = asyncio.create_task(c.spend())
        await _yield_loop()
        assert not task.done()
        err = ChannelClosedError("receiver gone")
        c.fail(err)
        with pytest.raises(ChannelClosedError, match="receiver gone"):
            await task
        # the channel stays failed, even with credit
        c.grant(1)
        with pytest.raises(ChannelClosedError):
            c.try_spend()
        with pytest.raises(ChannelClosedError):
            await c.spend()

    asyncio.run(main())


def test_fail_before_spend_raises_at_once():
    async def main():
        c = SenderCredit()
        c.fail(ConnectionResetError("peer reset"))
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(c.spend(), timeout=1)

    asyncio.run(main())


def test_each_grant_lets_exactly_that_many_buffers_through():
    async def main():
        c = SenderCredit()
        sent = 0

        async def sender(total: int) -> None:
            nonlocal sent
            for _ in range(total):
                await c.spend()
                sent += 1

        task = asyncio.create_task(sender(5))
        await _yield_loop()
        assert sent == 0
        c.grant(2)
        await _yield_loop()
        assert sent == 2 and not task.done()
        c.grant(3)
        await task
        assert sent == 5 and c.available == 0

    asyncio.run(main())


# ---- ReceiverCredit ----


def test_receiver_credit_requires_positive_initial():
    with pytest.raises(ValueError):
        ReceiverCredit(0)


def test_receiver_credit_accounting():
    r = ReceiverCredit(2)
    assert r.outstanding == 2
    r.on_buffer_received()
    r.on_buffer_received()
    assert r.outstanding == 0
    with pytest.raises(ChannelClosedError):
        r.on_buffer_received()  # a third buffer without credit breaks the protocol
    assert r.on_buffer_consumed() == 1
    assert r.outstanding == 1
    r.on_buffer_received()
    assert r.outstanding == 0


def test_sender_and_receiver_never_exceed_initial_credit():
    """Simulate a channel: buffers in flight + queued never exceed the initial credit."""
    initial = 3
    rng = random.Random(42)
    s, r = SenderCredit(), ReceiverCredit(initial)
    s.grant(initial)
    queued = 0
    received = 0
    for _ in range(500):
        if rng.random() < 0.5:
            if s.try_spend():
                r.on_buffer_received()
                queued += 1
                received += 1
        elif queued:
            queued -= 1
            n = r.on_buffer_consumed()
            if n:
                s.grant(n)
        assert queued <= initial
        assert s.available + queued == initial
        assert r.outstanding == initial - queued
    assert received > 100


# ---- frame ----


def test_header_layout_and_round_trip():
    data = frame.encode(frame.DATA, 7, b"payload")
    assert frame.HEADER_SIZE == 9
    assert data[:9] == (7).to_bytes(4, "big") + bytes([frame.DATA]) + (7).to_bytes(4, "big")
    assert frame.decode_header(data[:9]) == (7, frame.DATA, 7)
    assert data[9:] == b"payload"
    assert frame.decode_header(frame.encode(frame.END, 2**32 - 1)[:9]) == (0, frame.END, 2**32 - 1)


@pytest.mark.parametrize("n", [0, 1, 1000, 2**32 - 1])
def test_credit_round_trip(n):
    data = frame.encode_credit(5, n)
    length, kind, channel = frame.decode_header(data[:9])
    assert (length, kind, channel) == (4, frame.CREDIT, 5)
    assert frame.decode_credit(data[9:]) == n


def _sample_frames() -> tuple[list[tuple[int, int, bytes]], bytes]:
    rng = random.Random(3)
    frames = [
        (frame.HELLO, 0, pickle.dumps({"worker": "w1"})),
        (frame.OPEN, 1, pickle.dumps(("job", "v0", 0, "v1", 1))),
        (frame.DATA, 1, pickle.dumps(([1, 2, 3], [10, 20, 30]), protocol=5)),
        (frame.DATA, 2, bytes(rng.randrange(256) for _ in range(70_000))),
        (frame.CREDIT, 1, frame.encode_credit(1, 4)[9:]),
        (frame.END, 1, b""),
        (frame.CONTROL, 0, b"\x00" * 9),  # looks like a header but is payload
        (frame.FAIL, 2, pickle.dumps("boom")),
    ]
    stream = b"".join(frame.encode(k, c, p) for k, c, p in frames)
    return frames, stream


def test_decoder_whole_stream():
    frames, stream = _sample_frames()
    assert FrameDecoder().feed(stream) == frames


def test_decoder_byte_by_byte():
    frames, stream = _sample_frames()
    d = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got.extend(d.feed(stream[i : i + 1]))
    assert got == frames


@pytest.mark.parametrize("seed", range(5))
def test_decoder_random_chunks(seed):
    frames, stream = _sample_frames()
    rng = random.Random(seed)
    d = FrameDecoder()
    got = []
    pos = 0
    while pos < len(stream):
        step = rng.choice([1, 2, 5, 9, 10, 100, 4096, 50_000])
        got.extend(d.feed(stream[pos : pos + step]))
        pos += step
    assert got == frames


def test_decoder_holds_partial_frame():
    d = FrameDecoder()
    data = frame.encode_obj(frame.DATA, 3, ["x"])
    assert d.feed(data[:5]) == []
    assert d.feed(data[5:-1]) == []
    ((kind, ch, payload),) = d.feed(data[-1:])
    assert (kind, ch, pickle.loads(payload)) == (frame.DATA, 3, ["x"])


def test_invalid_kind_raises_frame_error():
    bad = frame.HEADER.pack(0, frame.MAX_KIND + 1, 0)
    with pytest.raises(FrameError):
        frame.decode_header(bad)
    with pytest.raises(FrameError):
        FrameDecoder().feed(bad)


def test_oversized_length_raises_frame_error():
    bad = frame.HEADER.pack(frame.MAX_FRAME + 1, frame.DATA, 0)
    with pytest.raises(FrameError):
        frame.decode_header(bad)
    # the decoder rejects it from the header alone, without waiting for a gigabyte of payload
    with pytest.raises(FrameError):
        FrameDecoder().feed(bad)


def test_http_request_is_not_a_frame():
    with pytest.raises(FrameError):
        FrameDecoder().feed(b"GET / HTTP/1.1\r\n\r\n")


def test_read_frame_from_stream_reader():
    async def main():
        reader = asyncio.StreamReader()
        reader.feed_data(frame.encode_obj(frame.DATA, 4, ([1], None)) + frame.encode(frame.END, 4))
        reader.feed_eof()
        kind, ch, payload = await frame.read_frame(reader)
        assert (kind, ch, pickle.loads(payload)) == (frame.DATA, 4, ([1], None))
        assert await frame.read_frame(reader) == (frame.END, 4, b"")
        with pytest.raises(asyncio.IncompleteReadError):
            await frame.read_frame(reader)

    asyncio.run(main())
