"""One bag, start to end: stage it, plan its topics, stream it through the frame path, write the output bag
(rosbag2 MCAP with the node's topic names) and the per-frame table, publish them with a manifest.

A bag that cannot be processed is a BagResult with status "failed" and the reason (no traceback); the outputs
of a failed bag are never published.
"""

from __future__ import annotations

import datetime
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rclpy.serialization import serialize_message

from depth_ft_ros.errors import DepthFtError
from depth_ft_ros.fleet.framepath import FrameFailure, InputCounts, plan_bag, run_frames
from depth_ft_ros.fleet.settings import FleetSettings
from depth_ft_ros.fleet.sources import BagSource, staged
from depth_ft_ros.fleet.store import OutputStore
from depth_ft_ros.fleet.table import FrameTable, frame_row
from depth_ft_ros.replay.rosbag_io import BagReader, BagWriter, keep_last_qos

OUTPUT_BAG = "bag"  # the rosbag2 folder inside a bag's output folder
TABLE = "frames.parquet"
OUTPUT_QOS = [keep_last_qos(5)]  # what the node's publishers offer (node/camera_stream.py OUTPUT_QOS)


@dataclass
class BagResult:
    name: str
    uri: str
    status: str  # done | skipped | failed
    reason: str = ""
    frames_in: int = 0  # images of the chosen camera topics
    frames_out: int = 0  # frames with outputs
    dropped: dict[str, int] = field(default_factory=dict)  # frames without outputs, by reason
    problems: dict[str, int] = field(default_factory=dict)  # input faults (frames may have gone on), by kind
    examples: dict[str, str] = field(default_factory=dict)  # the first message of each dropped reason / fault
    log_s: float = 0.0  # bag time covered by the images
    wall_s: float = 0.0
    attempts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def manifest_key(source: BagSource, settings: FleetSettings) -> dict[str, Any]:
    return {"input": source.identity(), **settings.key()}


def _count(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def _write_outputs(source: BagSource, bag: BagReader, settings: FleetSettings, store: OutputStore,
                   processor_for: Callable[[Any], Any], result: BagResult,
                   progress: Callable[[int], None] | None) -> None:
    plan = plan_bag(bag, settings)
    counts = {t.name: t.count for t in bag.topics()}
    result.frames_in = sum(counts.get(t, 0) for t in plan.image_topics())
    if result.frames_in == 0:
        raise DepthFtError(f"the camera image topics ({', '.join(plan.image_topics())}) have no messages")
    work = store.work_dir(source.name)
    try:
        writer = BagWriter(work / OUTPUT_BAG)
        table = FrameTable()
        stamps: list[int] = []  # first and last
        report = InputCounts()
        try:
            processor = processor_for(plan.config)
            for step in run_frames(bag, plan, settings, processor, report):
                outcome = step.result
                if isinstance(outcome, FrameFailure):
                    _count(result.dropped, str(outcome.kind))
                    result.examples.setdefault(str(outcome.kind), f"{outcome.stage}: {outcome.message}")
                    continue
                for topic, msgtype, msg in step.messages:
                    writer.write(topic, msgtype, step.log_time_ns, serialize_message(msg), OUTPUT_QOS)
                table.add(frame_row(source.name, outcome, step.frame, step.log_time_ns, plan.config, step.gt_depth_m))
                result.frames_out += 1
                stamps = [min([outcome.stamp_ns, *stamps[:1]]), max([outcome.stamp_ns, *stamps[1:]])]
                if progress is not None:
                    progress(1)
        finally:
            writer.close()
            result.problems = dict(report.counts)
            for kind, message in report.first.items():
                result.examples.setdefault(kind, message)
        if result.frames_out == 0:
            first = "; ".join(f"{kind}: {text}" for kind, text in result.examples.items())
            raise DepthFtError(f"no frame produced outputs (dropped: {result.dropped or 'none'}; input faults: "
                               f"{result.problems or 'none'}; {first})")
        table.write(work / TABLE)
        result.log_s = (stamps[1] - stamps[0]) / 1e9
        result.status = "done"
        store.publish(source.name, work, {
            **manifest_key(source, settings), "bag": source.name, "plan": plan.describe(),
            "result": result.to_dict(), "files": {"bag": OUTPUT_BAG, "table": TABLE},
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    except BaseException:
        result.status = "failed"
        store.discard(work)
        raise


def process_bag(source: BagSource, settings: FleetSettings, store: OutputStore, processor_for: Callable[[Any], Any],
                progress: Callable[[int], None] | None = None) -> BagResult:
    """Process one bag; `processor_for(config)` gives a fresh FrameProcessor (per-camera state starts empty).
    Never raises for a bad bag: the result says why it failed."""
    start_s = time.monotonic()
    result = BagResult(source.name, source.uri, "failed")
    local_prefix = "\0"
    try:
        with staged(source) as local:
            local_prefix = f"{local}: "  # the run names the bag by its URI, not by a staged copy
            with BagReader(local) as bag:
                _write_outputs(source, bag, settings, store, processor_for, result, progress)
    except DepthFtError as exc:
        result.reason = str(exc).replace(local_prefix, "")
    except OSError as exc:
        result.reason = f"cannot read or write it ({type(exc).__name__}: {exc})"
    except Exception as exc:  # one bag's bug must not end the run: named, with the place it happened
        where = traceback.extract_tb(exc.__traceback__)[-1]
        result.reason = f"internal error {type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})"
    result.wall_s = time.monotonic() - start_s
    return result
