"""Flow control toward one client: a slow reader loses the oldest frames, the producer never waits."""

from __future__ import annotations

import asyncio
import time

from videogen.realtime.flow import ClientSender, FrameBuffer


def test_a_full_buffer_drops_its_oldest_frame_and_counts_it():
    buffer = FrameBuffer(3)
    for n in range(5):
        buffer.put(bytes([n]))
    assert buffer.dropped == 2 and len(buffer) == 3
    assert [asyncio.run(buffer.get()) for _ in range(3)] == [b"\x02", b"\x03", b"\x04"]


async def test_a_slow_client_gets_the_newest_frames_and_the_pusher_never_waits():
    delivered: list[int] = []

    async def slow_send(frame: bytes) -> None:
        await asyncio.sleep(0.02)  # a client taking 50 frames a second
        delivered.append(int.from_bytes(frame, "big"))

    sender = ClientSender(slow_send, buffer_size=4)
    sender.start()
    longest_push = 0.0
    for n in range(200):  # 1,000 frames a second for 0.2 s
        started = time.perf_counter()
        sender.push(n.to_bytes(2, "big"))
        longest_push = max(longest_push, time.perf_counter() - started)
        await asyncio.sleep(0.001)
    assert await sender.drain(timeout=5)
    await sender.stop()
    assert longest_push < 0.005, "pushing a frame waited for the client"
    assert sender.dropped > 100 and sender.sent == len(delivered)
    assert sender.sent + sender.dropped == 200  # every frame is either delivered or counted
    assert delivered == sorted(delivered) and delivered[-1] == 199  # in order, ending with the newest


async def test_a_client_that_keeps_up_loses_nothing():
    delivered: list[bytes] = []

    async def send(frame: bytes) -> None:
        delivered.append(frame)

    sender = ClientSender(send, buffer_size=2)
    sender.start()
    for n in range(100):
        sender.push(bytes([n]))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    assert await sender.drain(timeout=5)
    await sender.stop()
    assert sender.dropped == 0 and len(delivered) == 100


class Pausable:
    """What studio.serve puts in a scope: writable until the transport's buffer is full."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait_writable(self) -> None:
        await self.event.wait()


async def test_while_the_connection_cannot_take_more_nothing_is_written_and_old_frames_drop():
    delivered: list[bytes] = []

    async def send(frame: bytes) -> None:
        delivered.append(frame)

    pressure = Pausable()
    sender = ClientSender(send, buffer_size=3, backpressure=pressure)
    sender.start()
    for n in range(10):
        sender.push(bytes([n]))
    await asyncio.sleep(0.05)
    assert delivered == [] and sender.dropped >= 6
    pressure.event.set()
    assert await sender.drain(timeout=5)
    await sender.stop()
    assert delivered[-1] == bytes([9]) and len(delivered) + sender.dropped == 10
