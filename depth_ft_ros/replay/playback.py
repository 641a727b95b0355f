"""Playback order and pacing of bag messages, and the progress line (no ROS here).

Lossless replays send each frame's side messages (camera_info, sparse points) slightly ahead of its image:
a bag records them in arrival order, often just after the image, and a node waiting for the image's outputs
before the next message would otherwise wait for a camera_info that is never sent. The node pairs messages
by stamp, so sending them early changes nothing else.
"""

from __future__ import annotations

import heapq
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TextIO

Message = tuple[str, str, int, bytes]  # topic, msgtype, log time ns, CDR bytes


def lead_topics(messages: Iterable[Message], early_topics: set[str], lead_ns: int) -> Iterator[Message]:
    """`messages` (in log-time order) with those of `early_topics` moved lead_ns earlier; otherwise stable.

    Streams with a heap holding at most lead_ns of messages: a message can be released once the input has
    moved lead_ns past its key, because no later message can sort before it.
    """
    heap: list[tuple[int, int, Message]] = []
    for seq, message in enumerate(messages):
        log_ns = message[2]
        key = log_ns - lead_ns if message[0] in early_topics else log_ns
        heapq.heappush(heap, (key, seq, message))
        while heap and heap[0][0] <= log_ns - lead_ns:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


class Pacer:
    """Sleeps so that bag time runs `rate` times as fast as wall time (ros2 bag play --rate)."""

    def __init__(self, rate: float, stop: threading.Event) -> None:
        self._rate = rate
        self._stop = stop
        self._start_wall_s: float | None = None
        self._start_bag_ns = 0

    def wait(self, bag_time_ns: int) -> None:
        now_s = time.monotonic()
        if self._start_wall_s is None:
            self._start_wall_s, self._start_bag_ns = now_s, bag_time_ns
            return
        due_s = self._start_wall_s + (bag_time_ns - self._start_bag_ns) / 1e9 / self._rate
        if due_s > now_s:
            self._stop.wait(due_s - now_s)  # returns early on Ctrl-C


class Progress:
    """`replay [#####.....] 12/30 frames  3.4 frames/s` on stderr: redrawn in place on a terminal, a line every
    10 % otherwise (logs, CI)."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self._total = max(total, 1)
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._width = width
        self._start_s = time.monotonic()
        self._last_decile = -1

    def update(self, done: int, note: str = "") -> None:
        elapsed_s = time.monotonic() - self._start_s
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        filled = int(self._width * done / self._total)
        line = (f"replay [{'#' * filled}{'.' * (self._width - filled)}] {done}/{self._total} frames  "
                f"{rate:.2f} frames/s  {elapsed_s:.1f} s{'  ' + note if note else ''}")
        if self._tty:
            self._stream.write("\r" + line + "\x1b[K")
        else:
            decile = 10 * done // self._total
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()
