"""One camera of the node: its subscriptions, inputs, publishers and counters, and the two ends of its frame path
on the worker thread: `prepare` (message bytes -> the processor's CameraFrame, msgs/frame_inputs.py) and `deliver`
(FrameResult -> published messages, msgs/outputs.py: only those someone subscribes to are built). The steps
between are the FrameProcessor's (frame/processor.py), shared by every camera. A camera's bad or missing input is
counted and reported on its own: it never stalls or fails another camera's frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rclpy.lifecycle import LifecycleNode
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.enums import BadInput, DropReason
from depth_ft_ros.errors import InputError
from depth_ft_ros.frame.failure import FrameFailure, Stage
from depth_ft_ros.frame.processor import CameraFrame, FrameResult, Outputs
from depth_ft_ros.frame.stats import NodeStats
from depth_ft_ros.frame.sync import StampBuffer
from depth_ft_ros.msgs import names
from depth_ft_ros.msgs.frame_inputs import CameraInputs, ExtrinsicsSource
from depth_ft_ros.msgs.outputs import output_messages, output_topics
from depth_ft_ros.msgs.serialized import SerializedMessage
from depth_ft_ros.node.input_qos import InputSubscriptions
from depth_ft_ros.node.reporting import Reporter

# REP 2003: drivers publish reliable; KEEP_LAST 5 bounds memory when a subscriber is slow.
OUTPUT_QOS = QoSProfile(depth=5)
_TYPES = {names.DEPTH_CAMERA_INFO: CameraInfo, names.NORMALS_CAMERA_INFO: CameraInfo, names.POINTS: PointCloud2}


class FramePublishers:
    """One camera's outputs; `camera` (several cameras) prefixes every topic: front/depth/image, ..."""

    def __init__(self, node: LifecycleNode, publish_relative: bool, camera: str = "") -> None:
        self._node = node
        self._camera = camera
        self._publish_relative = publish_relative
        prefix = len(names.of_camera(camera, ""))
        self._pubs: dict[str, Any] = {
            topic: node.create_lifecycle_publisher(_TYPES.get(topic[prefix:], Image), topic, OUTPUT_QOS)
            for topic in output_topics(camera, publish_relative)}

    def _wanted(self, topic: str) -> bool:
        pub = self._pubs.get(topic)
        return pub is not None and pub.get_subscription_count() > 0

    def _any(self, *topics: str) -> bool:
        return any(self._wanted(names.of_camera(self._camera, topic)) for topic in topics)

    def anyone_listening(self) -> bool:
        return any(pub.get_subscription_count() > 0 for pub in self._pubs.values())

    def wanted_outputs(self) -> Outputs:
        """Which outputs this frame needs, from the subscribers present now."""
        return Outputs(normals=self._any(names.NORMALS_IMAGE, names.NORMALS_COLORIZED),
                       cloud=self._any(names.POINTS), confidence=self._any(names.DEPTH_CONFIDENCE))

    def publish(self, header: Any, result: FrameResult) -> None:
        for topic, msg in output_messages(result, self._wanted, self._publish_relative, header):
            self._pubs[topic].publish(msg)

    def destroy(self) -> None:
        for pub in self._pubs.values():
            self._node.destroy_lifecycle_publisher(pub)


ImageItem = tuple[Any, float]  # (SerializedMessage of an Image or CompressedImage, arrival monotonic s)


@dataclass
class PreparedFrame:
    """A frame ready for the processor, and what its outputs need besides it."""

    frame: CameraFrame
    header: Any  # the image's std_msgs/Header: every output's stamp; frame_id replaced by the optical frame
    arrival_s: float
    timings_ms: dict[str, float] = field(default_factory=dict)


class CameraStream:
    def __init__(self, camera: str, stats: NodeStats, logger: Any) -> None:
        self.camera = camera  # "" for the single camera
        self.stats = stats
        self.report = Reporter(logger, stats)
        self.inputs = CameraInputs(camera, stats, self.report)
        self.pubs: FramePublishers | None = None
        self.subs: InputSubscriptions | None = None
        self.extrinsics: Any = None  # node/extrinsics.Extrinsics: tf2 or the static parameters
        self.last_alignment: dict[str, str] = {}
        self.last_image_s = 0.0  # monotonic arrival of the last image
        self.last_batch_size = 0  # frames in the forward the last frame went through

    @property
    def camera_frame(self) -> str:
        """The camera's optical frame, from the last frame."""
        return self.inputs.camera_frame

    def attach(self, pubs: FramePublishers, extrinsics: ExtrinsicsSource, sparse: StampBuffer[Any] | None,
               bridge: Any) -> None:
        """At configure: the camera's outputs, extrinsics and (shared) sparse buffer."""
        self.pubs, self.extrinsics = pubs, extrinsics
        self.inputs = CameraInputs(self.camera, self.stats, self.report, sparse=sparse, extrinsics=extrinsics,
                                   bridge=bridge)

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
        self.inputs.clear()

    def on_incompatible_qos(self, topic: str, message: str) -> None:
        self.report.bad_input("incompatible_qos", message, throttle_key=topic)

    def image_topic(self) -> str:
        return self.subs.subscriptions[0].topic_name if self.subs is not None and self.subs.subscriptions else ""

    # -- worker thread ----------------------------------------------------------------------------------------

    def prepare(self, cfg: NodeConfig, item: ImageItem, now_ns: int) -> PreparedFrame | None:
        """The frame for the processor, or None when it goes no further (dropped or refused: counted)."""
        serialized, arrival_s = item
        if self.pubs is None or not self.pubs.anyone_listening():
            self.stats.drop("no_subscribers")
            return None
        timings_ms: dict[str, float] = {}
        stamp_ns: int | None = None
        try:
            t0 = time.perf_counter()
            try:
                if isinstance(serialized, SerializedMessage):
                    stamp_ns = serialized.stamp_ns
                    msg = serialized.message()
                else:
                    msg = serialized
            except InputError as exc:
                raise FrameFailure(DropReason.BAD_INPUT, Stage.IMAGE, str(exc), camera_name=self.camera,
                                   stamp_ns=stamp_ns, cause=exc) from exc
            timings_ms["convert_image"] = (time.perf_counter() - t0) * 1e3  # the image's deserialization
            frame = self.inputs.assemble(cfg, msg, now_ns, self.pubs.wanted_outputs(), timings_ms)
            header = type(msg.header)(stamp=msg.header.stamp, frame_id=frame.frame_id)
            return PreparedFrame(frame, header, arrival_s, timings_ms)
        except FrameFailure as failure:
            self.failed(failure)
        except Exception as exc:  # a bug, not the input's fault: counted, logged with its traceback, node goes on
            self.failed(FrameFailure(DropReason.INTERNAL_ERROR, Stage.IMAGE, repr(exc), camera_name=self.camera,
                                     stamp_ns=stamp_ns, cause=exc))
        return None

    def deliver(self, cfg: NodeConfig, prepared: PreparedFrame, result: FrameResult | FrameFailure,
                work_start_s: float) -> bool:
        """Publish one processed frame and count it; False when it failed (counted)."""
        if isinstance(result, FrameFailure):
            self.failed(result)
            return False
        pubs = self.pubs
        assert pubs is not None
        try:
            t0 = time.perf_counter()
            pubs.publish(prepared.header, result)
            publish_ms = (time.perf_counter() - t0) * 1e3  # build and publish every output message
        except Exception as exc:
            self.failed(FrameFailure(DropReason.INTERNAL_ERROR, Stage.PUBLISH, repr(exc), camera_name=self.camera,
                                     stamp_ns=result.stamp_ns, cause=exc))
            return False
        self.inputs.count_dropped_points(cfg, result)
        timings_ms = {**prepared.timings_ms, **result.timings_ms, "publish": publish_ms}
        self.last_batch_size = result.batch_size
        self.last_alignment = alignment_report(result)
        if result.alignment.state == "relative-only" and cfg.alignment != "off":
            self.stats.warn("no_fit", result.alignment.reason)
        done_s = time.monotonic()
        self.stats.frame_out(prepared.arrival_s, (done_s - prepared.arrival_s) * 1e3, (done_s - work_start_s) * 1e3,
                             timings_ms)
        return True

    def failed(self, failure: FrameFailure) -> None:
        """Count a frame that produced no output under its kind, and say why (bad input: which input and field)."""
        self.stats.drop(failure.kind)
        if failure.kind is DropReason.BAD_INPUT:
            if not failure.reported:
                self.report.bad_input(failure.warn_kind, failure.message)
            return
        if failure.kind is DropReason.NO_CAMERA_INFO:
            self.report.bad_input(BadInput.NO_CAMERA_INFO, failure.message)
            return
        where = f" of camera {self.camera}" if self.camera else ""
        stamp = failure.stamp_ns if failure.stamp_ns is not None else -1
        cause = failure.cause if failure.cause is not None else failure
        self.report.internal_error(cause, f"processing the frame{where} stamped {stamp} ns (stage: {failure.stage})")

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


def alignment_report(result: FrameResult) -> dict[str, str]:
    """The /diagnostics keys of one frame's alignment."""
    report = result.alignment
    out = {
        "alignment.state": report.state, "alignment.method": report.method,
        "alignment.scale": f"{report.scale:.5g}", "alignment.shift": f"{report.shift:.5g}",
        "alignment.points_used": str(report.points_used), "alignment.inliers": str(report.inliers),
        "alignment.filter": report.filter_action, "alignment.reason": report.reason,
    }
    heldout = (report.local or {}).get("heldout_ratio")
    if heldout is not None:  # why local alignment was used or not (README, "Alignment")
        out["alignment.heldout_ratio"] = f"{heldout:.3g}"
    return out
