"""One camera of the node: its inputs, its outputs, its state and its counters.

The node serves one camera (topics image, camera_info, depth/image, ...) or several (`cameras`: C/image, ...,
C/depth/image, ...) over one copy of the models. Everything that belongs to a camera lives here: frame pairing
(camera_info, sparse points), camera model, extrinsics, the FramePipeline (metric aligner, temporal filter,
rectification maps), publishers, counters and /diagnostics status. A camera's bad or missing input is counted
and reported on its own: it never stalls or fails another camera's frames.

A frame goes through `prepare` (message -> FrameInput, on the worker thread), the shared networks (the node
batches the prepared frames of several cameras), then `finish` (alignment ... publish).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from std_msgs.msg import Header

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.errors import InputError
from depth_ft_ros.frame.processor import FrameInput, FramePipeline, Outputs
from depth_ft_ros.frame.stats import NodeStats
from depth_ft_ros.frame.sync import StampBuffer
from depth_ft_ros.model.networks import Predicted
from depth_ft_ros.msgs.serialized import SerializedMessage
from depth_ft_ros.node.extrinsics import Extrinsics
from depth_ft_ros.node.frame_inputs import FrameInputs, stamp_to_ns
from depth_ft_ros.node.input_qos import InputSubscriptions
from depth_ft_ros.node.publishers import FramePublishers
from depth_ft_ros.node.reporting import Reporter

ImageItem = tuple[Any, float]  # (SerializedMessage of an Image or CompressedImage, arrival monotonic s)


@dataclass
class PreparedFrame:
    """A frame ready for the networks, and what its outputs need besides them."""

    frame: FrameInput
    header: Header  # every output's stamp and frame
    outputs: Outputs
    arrival_s: float
    timings_ms: dict[str, float] = field(default_factory=dict)


class CameraStream:
    def __init__(self, camera: str, stats: NodeStats, logger: Any) -> None:
        self.camera = camera  # "" for the single camera
        self.stats = stats
        self.report = Reporter(logger, stats)
        self.inputs = FrameInputs(stats, self.report)
        self.pipeline: FramePipeline | None = None
        self.pubs: FramePublishers | None = None
        self.subs: InputSubscriptions | None = None
        self.extrinsics: Extrinsics | None = None
        self.last_alignment: dict[str, str] = {}
        self.camera_frame = ""  # the camera's optical frame, from the last frame
        self.last_image_s = 0.0  # monotonic arrival of the last image
        self._last_stamp_ns: int | None = None
        self.last_batch_size = 0  # frames in the forward the last frame went through
        self.stage = "image"  # the input being converted when an InputError is raised

    def attach(self, pipeline: FramePipeline, pubs: FramePublishers, extrinsics: Extrinsics,
               sparse: StampBuffer[Any] | None, bridge: Any) -> None:
        """At configure: the camera's pipeline (over the shared models), outputs, extrinsics and sparse buffer."""
        self.pipeline, self.pubs, self.extrinsics = pipeline, pubs, extrinsics
        self.inputs = FrameInputs(self.stats, self.report, sparse)
        self.inputs.bridge = bridge

    def release(self) -> None:
        """At cleanup: what attach and the node's subscriptions made (the models are the node's)."""
        if self.subs is not None:
            self.subs.destroy()
            self.subs = None
        if self.pubs is not None:
            self.pubs.destroy()
            self.pubs = None
        if self.extrinsics is not None:
            self.extrinsics.close()
            self.extrinsics = None
        self.pipeline = None
        self.inputs.clear()

    def on_incompatible_qos(self, topic: str, message: str) -> None:
        self.report.bad_input("incompatible_qos", message, throttle_key=topic)

    def image_topic(self) -> str:
        return self.subs.subscriptions[0].topic_name if self.subs is not None and self.subs.subscriptions else ""

    # -- worker thread ----------------------------------------------------------------------------------------

    def prepare(self, cfg: NodeConfig, item: ImageItem, now_ns: int) -> PreparedFrame | None:
        """The frame for the networks, or None when it goes no further (dropped or bad input: counted)."""
        serialized, arrival_s = item
        if self.pubs is None or not self.pubs.anyone_listening():
            self.stats.drop("no_subscribers")
            return None
        msg = None
        try:
            self.stage = "image"
            t0 = time.perf_counter()
            msg = serialized.message() if isinstance(serialized, SerializedMessage) else serialized
            return self._prepare(cfg, msg, arrival_s, now_ns, deserialize_ms=(time.perf_counter() - t0) * 1e3)
        except Exception as exc:
            stamp_ns = None
            if msg is None and isinstance(serialized, SerializedMessage):
                with contextlib.suppress(InputError):
                    stamp_ns = serialized.stamp_ns
            self._failed(exc, msg, stamp_ns)
            return None

    def finish(self, cfg: NodeConfig, prepared: PreparedFrame, predicted: Predicted, work_start_s: float) -> bool:
        """Alignment ... publish for one frame after the networks; False when it failed (counted)."""
        try:
            self.stage = "frame"
            if predicted.error is not None:
                raise predicted.error
            self._finish(cfg, prepared, predicted, work_start_s)
            return True
        except Exception as exc:
            self._failed(exc, None, stamp_ns=prepared.frame.stamp_ns)
            return False

    def _failed(self, exc: Exception, msg: Any, stamp_ns: int | None = None) -> None:
        if isinstance(exc, InputError):
            self.stats.drop("bad_input")  # the frame produced no output: count it as dropped too
            self.report.bad_input(f"bad_{self.stage}", str(exc))
            return
        self.stats.drop("internal_error")  # keep running: one bad frame must not kill the node
        if stamp_ns is None:
            stamp = getattr(getattr(msg, "header", None), "stamp", None)
            stamp_ns = stamp_to_ns(stamp) if stamp is not None else -1
        where = f" of camera {self.camera}" if self.camera else ""
        self.report.internal_error(exc, f"processing the frame{where} stamped {stamp_ns} ns (stage: {self.stage})")

    def _check_stamp(self, cfg: NodeConfig, stamp_ns: int, now_ns: int) -> None:
        """Refuse an image stamped far ahead of the node's clock: accepted, it would reset the alignment filter
        (stamps going backwards) for every later, correctly stamped frame."""
        if cfg.max_future_stamp <= 0 or now_ns <= 0:  # sim time before the first /clock: nothing to compare
            return
        ahead_s = (stamp_ns - now_ns) / 1e9
        if ahead_s > cfg.max_future_stamp:
            self.stage = "image_stamp"
            raise InputError(f"image header.stamp ({stamp_ns / 1e9:.3f} s) is {ahead_s:.3f} s ahead of the node's "
                             f"clock, more than max_future_stamp ({cfg.max_future_stamp:g} s): frame refused "
                             "(a camera clock not synchronized?)")
        if self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns:
            # The alignment filter resets itself on a stamp going backwards (and reports it).
            self.report.bad_input("stamp_backwards", f"image header.stamp went backwards by "
                                  f"{(self._last_stamp_ns - stamp_ns) / 1e9:.3f} s: alignment state reset "
                                  "(bag restarted?)")
        self._last_stamp_ns = stamp_ns

    def _prepare(self, cfg: NodeConfig, msg: Any, arrival_s: float, now_ns: int,
                 deserialize_ms: float = 0.0) -> PreparedFrame | None:
        pubs = self.pubs
        assert pubs is not None
        stamp_ns = stamp_to_ns(msg.header.stamp)
        self.stage = "image"  # names the bad input in warnings and diagnostics
        self._check_stamp(cfg, stamp_ns, now_ns)

        t0 = time.perf_counter()
        rgb = self.inputs.to_rgb(msg)
        t1 = time.perf_counter()
        paired = self.inputs.paired_camera(cfg, stamp_ns)
        t2 = time.perf_counter()
        if paired is None:
            self.stats.drop("no_camera_info")
            self.report.bad_input("no_camera_info", f"no camera_info within {cfg.sync_tolerance} s of the image "
                                  "stamp: frame dropped")
            return None
        info_frame_id, info_camera = paired
        if isinstance(info_camera, InputError):  # counted and warned about when it arrived
            self.stats.drop("bad_input")
            return None
        self.stage = "camera_info"
        camera = self.inputs.camera_for(info_camera, rgb.shape[1], rgb.shape[0])
        camera_frame = msg.header.frame_id or info_frame_id or cfg.camera_frame
        if not camera_frame:
            self.stage = "image_frame_id"
            raise InputError("image header.frame_id and camera_info header.frame_id are both empty and the "
                             "camera_frame parameter is not set: outputs would have no frame (set camera_frame, "
                             "e.g. camera_optical_frame)")
        self.camera_frame = camera_frame
        header = Header(stamp=msg.header.stamp, frame_id=camera_frame)

        frame = FrameInput(rgb=rgb, camera=camera, stamp_ns=stamp_ns)
        t3 = time.perf_counter()
        sparse_wait_s = 0.0
        if cfg.sparse_input != "none" and cfg.alignment != "off":
            sparse_wait_s = self.inputs.attach_sparse(cfg, frame, camera_frame, self.extrinsics)
        t4 = time.perf_counter()
        outputs = Outputs(normals=pubs.wants_normals(), cloud=pubs.wants_cloud(), confidence=pubs.wants_confidence())
        return PreparedFrame(frame, header, outputs, arrival_s, {
            "convert_image": deserialize_ms + (t1 - t0 + t3 - t2) * 1e3,  # image (from its bytes) + camera_info
            "convert_points": (t4 - t3 - sparse_wait_s) * 1e3,  # deserialize, decode, move into the camera frame
            "sync_wait": (t2 - t1 + sparse_wait_s) * 1e3,
        })

    def _finish(self, cfg: NodeConfig, prepared: PreparedFrame, predicted: Predicted, work_start_s: float) -> None:
        pipeline, pubs = self.pipeline, self.pubs
        assert pipeline is not None and pubs is not None
        result = pipeline.finish(prepared.frame, predicted, prepared.outputs)
        t5 = time.perf_counter()
        pubs.publish(prepared.header, result)
        self.inputs.count_dropped_points(cfg, result)
        result.timings_ms.update(prepared.timings_ms)
        result.timings_ms["publish"] = (time.perf_counter() - t5) * 1e3  # build and publish every output message
        self.last_batch_size = predicted.batch_size
        self.last_alignment = {
            "alignment.state": result.alignment.state, "alignment.method": result.alignment.method,
            "alignment.scale": f"{result.alignment.scale:.5g}", "alignment.shift": f"{result.alignment.shift:.5g}",
            "alignment.points_used": str(result.alignment.points_used),
            "alignment.inliers": str(result.alignment.inliers),
            "alignment.filter": result.alignment.filter_action,
            "alignment.reason": result.alignment.reason,
        }
        heldout = (result.alignment.local or {}).get("heldout_ratio")
        if heldout is not None:  # why local alignment was used or not (README, "Alignment")
            self.last_alignment["alignment.heldout_ratio"] = f"{heldout:.3g}"
        if result.alignment.state == "relative-only" and cfg.alignment != "off":
            self.stats.warn("no_fit", result.alignment.reason)
        done_s = time.monotonic()
        self.stats.frame_out(prepared.arrival_s, (done_s - prepared.arrival_s) * 1e3, (done_s - work_start_s) * 1e3,
                             result.timings_ms)

    # -- reporting --------------------------------------------------------------------------------------------

    def conditions(self, active: bool, active_since_s: float, input_timeout_s: float) -> list[str]:
        """What is wrong right now, beyond counted faults: incompatible input QoS, no image for a while."""
        conditions = list(self.subs.incompatible.values()) if self.subs is not None else []
        if active and input_timeout_s > 0:
            silent_s = time.monotonic() - max(self.last_image_s, active_since_s)
            if silent_s > input_timeout_s:
                conditions.append(f"no image on {self.image_topic()} for {silent_s:.1f} s (input_timeout "
                                  f"{input_timeout_s:g} s)")
        return conditions
