"""Counters and rolling timings for the node's diagnostics: nothing is dropped without being counted; and the
health of a camera computed from them (the one place of the OK / WARN / ERROR rules).

Health, first match wins (assess_health; node/diagnostics.py turns it into the DiagnosticStatus level):
- ERROR: the models failed to load (configure failed); or internal errors (NodeStats.internal_error: a bug or a
  broken environment, not the input's fault) within the last recent_window_s (ERROR while they repeat, OK again one
  window after the last).
- WARN: not configured (no model loaded); an active condition (incompatible QoS on an input, no image for
  input_timeout s); bad input (NodeStats.warn) within the window; the last frame's alignment HELD or RELATIVE_ONLY
  (NodeStats.aligned; alignment off gives OFF, which is what was asked for).
- OK: frames flow. Expected losses (frames superseded under load, LiDAR points outside the image) are counted and
  shown, and do not change the level.
Levels come from counters and typed states, never from the text of a message.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from depth_ft_ros.enums import AlignmentState, BadInput, DropReason, TextEnum


class RateMeter:
    """Events per second over a sliding window of wall time."""

    def __init__(self, window_s: float = 5.0) -> None:
        self._window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now_s: float | None = None) -> None:
        now_s = time.monotonic() if now_s is None else now_s
        self._times.append(now_s)
        self._trim(now_s)

    def rate_hz(self, now_s: float | None = None) -> float:
        now_s = time.monotonic() if now_s is None else now_s
        self._trim(now_s)
        if len(self._times) < 2:
            return 0.0
        span_s = now_s - self._times[0]
        return (len(self._times) - 1) / span_s if span_s > 0 else 0.0

    def _trim(self, now_s: float) -> None:
        while self._times and now_s - self._times[0] > self._window_s:
            self._times.popleft()


# /diagnostics reports a condition while it happened within this many seconds: internal errors -> ERROR, bad
# input -> WARN. Seconds rather than frames, so the level also recovers when frames stop.
RECENT_WINDOW_S = 10.0


class NodeStats:
    """What the node did with its input, for /diagnostics. Safe to update from several threads.

    Three kinds of trouble, counted apart: bad input (`warnings`, by kind), internal errors (a bug or a broken
    environment, not the input's fault) and sparse points dropped by projection (`points_dropped`, by reason)."""

    def __init__(self, window: int = 200, recent_window_s: float = RECENT_WINDOW_S) -> None:
        self._lock = threading.Lock()
        self.recent_window_s = recent_window_s
        self.frames_in = 0
        self.frames_out = 0
        # Keys are DropReason / BadInput members (a string that names one becomes it; others are kept as given).
        self.dropped: Counter[DropReason | str] = Counter()  # frame drop reason -> count
        self.warnings: Counter[BadInput | str] = Counter()  # bad-input kind -> count
        self.last_warning = ""
        self.internal_errors = 0
        self.last_internal_error = ""
        self._bad_input_s: deque[float] = deque(maxlen=window)  # monotonic times, for the recent window
        self._internal_error_s: deque[float] = deque(maxlen=window)
        self.points_dropped: Counter[str] = Counter()  # sparse point drop reason -> points, all frames
        self.last_frame_points: dict[str, int] = {}  # the last aligned frame: input, used and each drop reason
        self.alignment_states: Counter[AlignmentState] = Counter()  # frames by alignment outcome
        self.last_alignment_state: AlignmentState | None = None
        self.last_alignment_reason = ""
        self.in_rate = RateMeter()
        self.out_rate = RateMeter()
        self._latency_ms: deque[float] = deque(maxlen=window)
        # Last frames: arrival times (monotonic s) of every input, and (arrival s, arrival-to-publish latency ms,
        # worker time ms) of every published frame; tests and benchmarks read them.
        self.recent_arrivals_s: deque[float] = deque(maxlen=window)
        self.recent_frames: deque[tuple[float, float, float]] = deque(maxlen=window)
        self.recent_stages_ms: deque[dict[str, float]] = deque(maxlen=window)  # per published frame

    def frame_in(self, arrival_s: float) -> None:
        with self._lock:
            self.frames_in += 1
            self.in_rate.tick(arrival_s)
            self.recent_arrivals_s.append(arrival_s)

    def drop(self, reason: DropReason | str, count: int = 1) -> None:
        with self._lock:
            self.dropped[_member(DropReason, reason)] += count

    def warn(self, kind: BadInput | str, message: str, now_s: float | None = None) -> None:
        """One bad input of `kind` (named in the message)."""
        with self._lock:
            self.warnings[_member(BadInput, kind)] += 1
            self.last_warning = message
            self._bad_input_s.append(time.monotonic() if now_s is None else now_s)

    def internal_error(self, message: str, now_s: float | None = None) -> None:
        with self._lock:
            self.internal_errors += 1
            self.last_internal_error = message
            self._internal_error_s.append(time.monotonic() if now_s is None else now_s)

    def sparse_points(self, n_input: int, n_used: int, dropped: dict[str, int]) -> None:
        """The sparse points of one frame: how many came in, were used, and were dropped by each reason."""
        with self._lock:
            self.points_dropped.update({k: v for k, v in dropped.items() if v})
            self.last_frame_points = {"input": n_input, "used": n_used, **dropped}

    def aligned(self, state: AlignmentState | str, reason: str = "") -> None:
        """One published frame's alignment outcome (and why, for the status message)."""
        member = AlignmentState(state)
        with self._lock:
            self.alignment_states[member] += 1
            self.last_alignment_state, self.last_alignment_reason = member, reason

    def recent(self, now_s: float | None = None) -> tuple[int, int]:
        """(bad inputs, internal errors) within the last recent_window_s."""
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            return (sum(now_s - t <= self.recent_window_s for t in self._bad_input_s),
                    sum(now_s - t <= self.recent_window_s for t in self._internal_error_s))

    def frame_out(self, arrival_s: float, latency_ms: float, work_ms: float, stages_ms: dict[str, float]) -> None:
        with self._lock:
            self.frames_out += 1
            self.out_rate.tick()
            self._latency_ms.append(latency_ms)
            self.recent_frames.append((arrival_s, latency_ms, work_ms))
            self.recent_stages_ms.append(dict(stages_ms))

    def frames_finished(self) -> int:
        """Frames the node is done with: published or dropped (every drop is counted, with its reason)."""
        with self._lock:
            return self.frames_out + sum(self.dropped.values())

    def snapshot(self, now_s: float | None = None) -> dict[str, str]:
        """Flat key -> text pairs, ready to become diagnostic KeyValues."""
        bad_recent, errors_recent = self.recent(now_s)
        with self._lock:
            values = {
                "frames_in": str(self.frames_in),
                "frames_out": str(self.frames_out),
                "frames_dropped": str(sum(self.dropped.values())),
                "input_rate_hz": f"{self.in_rate.rate_hz():.2f}",
                "output_rate_hz": f"{self.out_rate.rate_hz():.2f}",
                "bad_inputs": str(sum(self.warnings.values())),
                "bad_inputs.recent": str(bad_recent),
                "internal_errors": str(self.internal_errors),
                "internal_errors.recent": str(errors_recent),
                "recent_window_s": f"{self.recent_window_s:g}",
            }
            values.update({f"dropped.{k}": str(v) for k, v in sorted(self.dropped.items())})
            values.update({f"bad_input.{k}": str(v) for k, v in sorted(self.warnings.items())})
            values.update({f"sparse_points.dropped.{k}": str(v) for k, v in sorted(self.points_dropped.items())})
            values.update({f"sparse_points.last_frame.{k}": str(v) for k, v in self.last_frame_points.items()})
            values.update({f"alignment_frames.{k}": str(v) for k, v in sorted(self.alignment_states.items())})
            if self.last_warning:
                values["last_warning"] = self.last_warning
            if self.last_internal_error:
                values["last_internal_error"] = self.last_internal_error
            if self._latency_ms:
                lat = np.asarray(self._latency_ms)
                values["latency_ms.p50"] = f"{np.percentile(lat, 50):.1f}"
                values["latency_ms.p95"] = f"{np.percentile(lat, 95):.1f}"
            for stage, median_ms in stage_medians_ms(self.recent_stages_ms).items():
                values[f"time_ms.{stage}"] = f"{median_ms:.2f}"
            return values


class Health(IntEnum):
    """A camera's health; the values are diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2


@dataclass(frozen=True)
class HealthInputs:
    """What assess_health reads besides the counters: the node's state and its active conditions."""

    configured: bool
    configure_error: str = ""  # why the last configure failed (models not loaded)
    conditions: tuple[str, ...] = ()  # active now: incompatible QoS, input timeout


def assess_health(stats: NodeStats, node: HealthInputs, now_s: float | None = None) -> tuple[Health, str]:
    """(level, message) by the rules in the module docstring."""
    bad_recent, errors_recent = stats.recent(now_s)
    window = f"{stats.recent_window_s:g}"
    if node.configure_error:
        return Health.ERROR, f"models failed to load: {node.configure_error}"
    if not node.configured:
        return Health.WARN, "not configured (no model loaded)"
    if errors_recent > 0:
        last = stats.last_internal_error
        return Health.ERROR, f"{errors_recent} internal errors in the last {window} s; last: {last}"
    if node.conditions:
        return Health.WARN, "; ".join(node.conditions)
    if bad_recent > 0:
        return Health.WARN, f"{bad_recent} bad inputs in the last {window} s; last: {stats.last_warning}"
    state = stats.last_alignment_state
    if state in (AlignmentState.HELD, AlignmentState.RELATIVE_ONLY):
        return Health.WARN, f"alignment {state}: {stats.last_alignment_reason}".rstrip(": ")
    return Health.OK, "running"


def _member(enum: type[TextEnum], value: TextEnum | str) -> TextEnum | str:
    """The enum member named by `value`, or `value` itself when it names none (still counted)."""
    try:
        return enum(value)
    except ValueError:
        return value


def stage_medians_ms(frames: list[dict[str, float]] | deque[dict[str, float]]) -> dict[str, float]:
    """Median of each stage over the frames that report it."""
    stages = sorted({stage for frame in frames for stage in frame})
    return {stage: float(np.median([f[stage] for f in frames if stage in f])) for stage in stages}
