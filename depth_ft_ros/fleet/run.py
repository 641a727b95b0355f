"""A whole fleet run: expand the inputs, skip the bags whose outputs match, process the others on the engine,
follow the progress, write the run summary (--out/fleet_run.json) that the report code reads.
"""

from __future__ import annotations

import datetime
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from depth_ft_ros.fleet.bagjob import BagResult, manifest_key
from depth_ft_ros.fleet.engine import EngineOptions, ray_available, run_in_process, run_on_ray
from depth_ft_ros.fleet.settings import FleetSettings
from depth_ft_ros.fleet.sources import BagSource, expand_inputs
from depth_ft_ros.fleet.store import OutputStore

RUN_SUMMARY = "fleet_run.json"


@dataclass
class FleetRun:
    """What a run did; `exit_code` 0 when every bag is done (processed now or before), 1 when some failed."""

    results: list[BagResult] = field(default_factory=list)
    engine: str = ""
    wall_s: float = 0.0

    def by_status(self, status: str) -> list[BagResult]:
        return [r for r in self.results if r.status == status]

    @property
    def exit_code(self) -> int:
        return 1 if self.by_status("failed") else 0

    def summary(self, settings: FleetSettings, out_uri: str, started: str) -> dict[str, Any]:
        done = self.by_status("done")
        frames = sum(r.frames_out for r in done)
        log_s = sum(r.log_s for r in done)
        return {
            "started": started, "wall_s": round(self.wall_s, 3), "engine": self.engine, "out": out_uri,
            "bags": {"total": len(self.results), "done": len(done), "skipped": len(self.by_status("skipped")),
                     "failed": len(self.by_status("failed"))},
            "frames_out": frames, "log_s": log_s,
            "frames_per_s": frames / self.wall_s if self.wall_s > 0 else 0.0,
            "log_hours_per_hour": log_s / self.wall_s if self.wall_s > 0 else 0.0,
            "failed": [{"bag": r.name, "uri": r.uri, "reason": r.reason} for r in self.by_status("failed")],
            "skipped": [r.name for r in self.by_status("skipped")],
            "results": [r.to_dict() for r in self.results],
            "settings": settings.key(),
        }


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """`fleet: bags 3 done, 1 failed / 10 · 12.3 frames/s · ~4m10s left` on stderr after each bag (and
    every `every_s` while bags run), time left from the bytes of the bags still to do."""

    def __init__(self, sources: list[BagSource], skipped: int, failed: int, stream: TextIO,
                 every_s: float = 30.0) -> None:
        self.total = len(sources) + skipped + failed
        self.bytes_total = sum(s.size_bytes for s in sources)
        self.bytes_done = 0
        self.done, self.failed = 0, failed
        self.skipped = skipped
        self.frames = 0
        self.stream = stream
        self.every_s = every_s
        self.start_s = time.monotonic()
        self._last_s = self.start_s

    def bag(self, result: BagResult, size_bytes: int) -> None:
        self.bytes_done += size_bytes
        if result.status == "done":
            self.done += 1
            self.frames += result.frames_out
        else:
            self.failed += 1
        self.line()

    def tick(self) -> None:
        if time.monotonic() - self._last_s >= self.every_s:
            self.line()

    def line(self) -> None:
        now_s = time.monotonic()
        self._last_s = now_s
        elapsed_s = now_s - self.start_s
        rate = self.frames / elapsed_s if elapsed_s > 0 else 0.0
        left = ""
        if 0 < self.bytes_done < self.bytes_total:
            left = f" · ~{_duration(elapsed_s * (self.bytes_total - self.bytes_done) / self.bytes_done)} left"
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        print(f"fleet: bags {self.done} done, {self.failed} failed{skipped} / {self.total} · {rate:.2f} frames/s"
              f"{left}", file=self.stream, flush=True)


def run_fleet(inputs: list[str], out_uri: str, settings: FleetSettings, engine: EngineOptions,
              stream: TextIO | None = None) -> FleetRun:
    """Run every bag `inputs` names; progress and faults go to `stream` (stderr when None)."""
    stream = stream or sys.stderr
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    start_s = time.monotonic()
    run = FleetRun()
    sources, problems = expand_inputs(inputs)
    run.results += [BagResult(p.uri.rstrip("/").rsplit("/", 1)[-1], p.uri, "failed", p.reason) for p in problems]
    store = OutputStore(out_uri)
    stale = store.remove_partials()
    if stale:
        print(f"fleet: removed {len(stale)} partial output(s) of an interrupted run: {', '.join(stale)}",
              file=stream)
    todo: list[BagSource] = []
    for source in sources:
        manifest = store.manifest(source.name)
        key = manifest_key(source, settings)
        if manifest is not None and all(manifest.get(k) == v for k, v in key.items()):
            run.results.append(BagResult(source.name, source.uri, "skipped", "outputs up to date"))
        else:
            todo.append(source)
    skipped = [r.name for r in run.by_status("skipped")]
    if skipped:
        print(f"fleet: skipped {len(skipped)} bag(s) whose outputs match (same input, models, parameters): "
              f"{', '.join(skipped)}", file=stream)
    for problem in problems:
        print(f"fleet: failed: {problem.uri}: {problem.reason}", file=stream)
    sizes = {s.uri: s.size_bytes for s in todo}
    progress = Progress(todo, len(skipped), len(problems), stream)

    def on_result(result: BagResult) -> None:
        run.results.append(result)
        if result.status == "failed":
            print(f"fleet: failed: {result.uri}: {result.reason}", file=stream)
        elif result.dropped or result.problems:  # counted in fleet_run.json and the manifest too
            print(f"fleet: {result.name}: {sum(result.dropped.values())} of {result.frames_in} frames without "
                  f"outputs {result.dropped or ''}; side-input problems {result.problems or 'none'}", file=stream)
        progress.bag(result, sizes.get(result.uri, 0))

    if todo:
        use_ray = engine.address != "none" and ray_available()
        if engine.address not in ("none", "local") and not use_ray:
            raise ImportError("--address needs Ray: pip install 'depth_ft_ros[fleet]' (ray[data])")
        if not use_ray and engine.address == "local":
            print("fleet: Ray is not installed: processing the bags in this process", file=stream)
        run.engine = (run_on_ray(todo, settings, out_uri, engine, on_result, progress.tick) if use_ray
                      else run_in_process(todo, settings, out_uri, on_result))
        store.remove_partials()  # a lost worker's work folder (its bag was published by another attempt)
    run.wall_s = time.monotonic() - start_s
    store.write_json(RUN_SUMMARY, run.summary(settings, out_uri, started))
    _write_report(store, stream)
    return run


def _write_report(store: OutputStore, stream: TextIO) -> None:
    """The Markdown summary with its plot (fleet.report), read back from a local --out."""
    if store.remote:
        print("fleet: no summary.md for an object-store --out (fleet_run.json has the run's numbers; "
              "depth_ft_ros.fleet.report.write_summary on a local copy writes it)", file=stream)
        return
    try:
        from depth_ft_ros.fleet.report import write_summary
    except ImportError as exc:  # matplotlib: the fleet extra
        print(f"fleet: no summary.md ({exc}; pip install '.[fleet]')", file=stream)
        return
    print(f"fleet: summary {write_summary(Path(store.root))}", file=stream)
