"""One camera's inputs as messages -> the processor's CameraFrame: its camera_info and sparse points stored as they
arrive and paired with an image by stamp, the image decoded, the points moved into the camera frame.

No rclpy here: the node stores what its subscriptions receive, a batch engine what it reads from a bag (messages
deserialized with rclpy.serialization or built by rosbags' typestore carry the same fields), and both assemble
frames with this same code. camera_info is converted and checked when it arrives (D against its distortion model, K,
P, ROI): a refused one is reported once per message and stored as its InputError, so the frame it pairs with fails
as bad input, not as "no camera_info".
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.enums import DropReason
from depth_ft_ros.errors import InputError
from depth_ft_ros.frame.failure import FrameFailure, Stage
from depth_ft_ros.frame.processor import CameraFrame, FrameResult, Outputs
from depth_ft_ros.frame.stats import NodeStats
from depth_ft_ros.frame.sync import StampBuffer
from depth_ft_ros.geometry.camera import PinholeCamera, camera_for_image
from depth_ft_ros.geometry.pose import pose_to_matrix
from depth_ft_ros.geometry.sparse import DROP_REASONS
from depth_ft_ros.msgs import convert
from depth_ft_ros.msgs.camera_info import CameraInfoCache
from depth_ft_ros.msgs.serialized import SerializedMessage

PairedCamera = tuple[str, PinholeCamera | InputError]  # (camera_info frame_id, camera or why it was refused)


class InputReport(Protocol):
    """Where input faults go: counted and logged, throttled (the node's Reporter)."""

    def bad_input(self, kind: str, message: str, throttle_s: float = ..., throttle_key: str = "") -> None: ...

    def note(self, key: str, message: str, throttle_s: float = ...) -> None: ...


class ExtrinsicsSource(Protocol):
    """T_camera_source for the sparse points (tf2 on robots: node/extrinsics.py; static: StaticExtrinsics)."""

    def lookup_at(self, source_frame: str, camera_frame: str, *, source_stamp_ns: int = 0, image_stamp_ns: int = 0,
                  fixed_frame: str = "", timeout_s: float = 0.0) -> tuple[np.ndarray | None, str]: ...


class StaticExtrinsics:
    """Fixed extrinsics (the static_translation / static_rotation parameters, or a bag's /tf_static)."""

    source = "static parameters"

    def __init__(self, translation_m: list[float], rotation_xyzw: list[float]) -> None:
        self.matrix = pose_to_matrix(translation_m, rotation_xyzw)

    def lookup_at(self, source_frame: str, camera_frame: str, *, source_stamp_ns: int = 0, image_stamp_ns: int = 0,
                  fixed_frame: str = "", timeout_s: float = 0.0) -> tuple[np.ndarray | None, str]:
        if not source_frame or source_frame == camera_frame:
            return np.eye(4), ""
        return self.matrix, ""


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def store_sparse(buffer: StampBuffer[Any], msg: Any, reports: list[InputReport]) -> None:
    """Store a sparse message by its stamp (read from the bytes of a SerializedMessage); one whose stamp cannot
    be read is bad input for every camera that would pair with it."""
    try:
        stamp_ns = msg.stamp_ns if isinstance(msg, SerializedMessage) else stamp_to_ns(msg.header.stamp)
    except InputError as exc:
        for report in reports:
            report.bad_input("bad_sparse_message", f"sparse message refused: {exc}")
        return
    buffer.add(stamp_ns, msg)


class CameraInputs:
    """One camera's side inputs and the assembly of its frames. `sparse`: a buffer shared with other cameras (one
    LiDAR seen by several cameras, filled once), else this camera's own."""

    def __init__(self, camera_name: str, stats: NodeStats, report: InputReport, *,
                 sparse: StampBuffer[Any] | None = None, extrinsics: ExtrinsicsSource | None = None,
                 bridge: Any = None) -> None:
        self.camera_name = camera_name
        self._stats = stats
        self._report = report
        self._infos: StampBuffer[PairedCamera] = StampBuffer(maxlen=30)
        self._info_cache = CameraInfoCache()
        self._sparse: StampBuffer[Any] = sparse if sparse is not None else StampBuffer(maxlen=10)
        self._scaled_camera: tuple[tuple[int, int, int], PinholeCamera] | None = None
        self._last_stamp_ns: int | None = None
        self.extrinsics = extrinsics
        self.bridge = bridge  # a cv_bridge.CvBridge on robots (use_cv_bridge), else None
        self.camera_frame = ""  # the optical frame of the last assembled frame

    def clear(self) -> None:
        self._infos.clear()
        self._sparse.clear()

    # -- arrivals (the node's executor thread, or a bag reader) ----------------------------------------------

    def on_camera_info(self, msg: Any) -> None:
        try:
            camera: PinholeCamera | InputError = self._info_cache.camera(msg)
        except InputError as exc:
            self._report.bad_input("bad_camera_info", f"camera_info refused: {exc}", throttle_key=str(exc))
            camera = exc
        self._infos.add(stamp_to_ns(msg.header.stamp), (msg.header.frame_id, camera))

    def on_sparse(self, msg: Any) -> None:
        """A sparse message, deserialized or (raw subscription) a SerializedMessage, stored by its stamp."""
        store_sparse(self._sparse, msg, [self._report])

    # -- assembly (the node's worker thread) -----------------------------------------------------------------

    def assemble(self, cfg: NodeConfig, msg: Any, now_ns: int, outputs: Outputs,
                 timings_ms: dict[str, float]) -> CameraFrame:
        """The image message (deserialized) with its camera_info and sparse points as a CameraFrame; raises
        FrameFailure when the frame goes no further. Side-input faults (no sparse points, no transform) are
        reported and the frame goes on without metric points. Adds convert_image, convert_points and sync_wait
        to timings_ms."""
        stamp_ns = stamp_to_ns(msg.header.stamp)
        stage = Stage.IMAGE_STAMP
        try:
            self._check_stamp(cfg, stamp_ns, now_ns)
            stage = Stage.IMAGE
            t0 = time.perf_counter()
            rgb = self.to_rgb(msg)
            t1 = time.perf_counter()
            paired = self._infos.wait_nearest(stamp_ns, int(cfg.sync_tolerance * 1e9), cfg.sync_wait)
            t2 = time.perf_counter()
            if paired is None:
                raise FrameFailure(DropReason.NO_CAMERA_INFO, Stage.CAMERA_INFO,
                                   f"no camera_info within {cfg.sync_tolerance} s of the image stamp: frame dropped",
                                   camera_name=self.camera_name, stamp_ns=stamp_ns)
            info_frame_id, info_camera = paired
            if isinstance(info_camera, InputError):  # reported when it arrived: count the frame only
                raise FrameFailure(DropReason.BAD_INPUT, Stage.CAMERA_INFO, f"camera_info refused: {info_camera}",
                                   camera_name=self.camera_name, stamp_ns=stamp_ns, cause=info_camera,
                                   reported=True)
            stage = Stage.CAMERA_INFO
            camera = self._camera_for(info_camera, rgb.shape[1], rgb.shape[0])
            stage = Stage.IMAGE_FRAME_ID
            camera_frame = msg.header.frame_id or info_frame_id or cfg.camera_frame
            if not camera_frame:
                raise InputError("image header.frame_id and camera_info header.frame_id are both empty and the "
                                 "camera_frame parameter is not set: outputs would have no frame (set camera_frame, "
                                 "e.g. camera_optical_frame)")
        except InputError as exc:
            raise FrameFailure(DropReason.BAD_INPUT, stage, str(exc), camera_name=self.camera_name,
                               stamp_ns=stamp_ns, cause=exc) from exc
        self.camera_frame = camera_frame
        frame = CameraFrame(rgb, camera, stamp_ns, self.camera_name, camera_frame, outputs=outputs)
        t3 = time.perf_counter()
        sparse_wait_s = 0.0
        if cfg.sparse_input != "none" and cfg.alignment != "off":
            sparse_wait_s = self._attach_sparse(cfg, frame)
        t4 = time.perf_counter()
        timings_ms["convert_image"] = timings_ms.get("convert_image", 0.0) + (t1 - t0 + t3 - t2) * 1e3
        timings_ms["convert_points"] = (t4 - t3 - sparse_wait_s) * 1e3  # deserialize, decode, move into the camera
        timings_ms["sync_wait"] = (t2 - t1 + sparse_wait_s) * 1e3
        return frame

    def to_rgb(self, msg: Any) -> np.ndarray:
        """cv_bridge when configured and available; the numpy path otherwise, and for what cv_bridge refuses
        (e.g. 8UC3): a message is bad only when neither can read it."""
        compressed = hasattr(msg, "format") and not hasattr(msg, "encoding")
        to_rgb = convert.compressed_to_rgb if compressed else convert.image_to_rgb
        if self.bridge is not None:
            try:
                return to_rgb(msg, bridge=self.bridge)
            except InputError:
                pass
        return to_rgb(msg)

    def _check_stamp(self, cfg: NodeConfig, stamp_ns: int, now_ns: int) -> None:
        """Refuse an image stamped far ahead of the clock: accepted, it would reset the alignment filter (stamps
        going backwards) for every later, correctly stamped frame."""
        if cfg.max_future_stamp > 0 and now_ns > 0:  # sim time before the first /clock: nothing to compare
            ahead_s = (stamp_ns - now_ns) / 1e9
            if ahead_s > cfg.max_future_stamp:
                raise InputError(f"image header.stamp ({stamp_ns / 1e9:.3f} s) is {ahead_s:.3f} s ahead of the "
                                 f"node's clock, more than max_future_stamp ({cfg.max_future_stamp:g} s): frame "
                                 "refused (a camera clock not synchronized?)")
        if self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns:
            # The alignment filter resets itself on a stamp going backwards (and reports it).
            self._report.bad_input("stamp_backwards", f"image header.stamp went backwards by "
                                   f"{(self._last_stamp_ns - stamp_ns) / 1e9:.3f} s: alignment state reset "
                                   "(bag restarted?)")
        self._last_stamp_ns = stamp_ns

    def _camera_for(self, camera: PinholeCamera, width: int, height: int) -> PinholeCamera:
        """The camera of this frame, scaled to the image; the same object while camera_info and the image size
        do not change, so its per-pixel rays (cached on the camera) are computed once, not per frame."""
        key = (id(camera), width, height)
        if self._scaled_camera is None or self._scaled_camera[0] != key:
            self._scaled_camera = (key, camera_for_image(camera, width, height))
        return self._scaled_camera[1]

    def _attach_sparse(self, cfg: NodeConfig, frame: CameraFrame) -> float:
        """Pair the frame with its sparse points and their extrinsics; returns the seconds spent waiting."""
        topic = "sparse_points" if cfg.sparse_input == "points" else "sparse_depth"
        t0 = time.perf_counter()
        msg = self._sparse.wait_nearest(frame.stamp_ns, int(cfg.sync_tolerance * 1e9), cfg.sync_wait)
        waited_s = time.perf_counter() - t0
        if msg is None:
            self._report.bad_input("no_sparse_points", f"no {topic} message within sync_tolerance "
                                   f"({cfg.sync_tolerance:g} s) of the image stamp: frame has no metric points")
            return waited_s
        try:
            if isinstance(msg, SerializedMessage):  # deserialized once, for every camera that pairs with it
                msg = msg.message()
            if cfg.sparse_input == "depth":
                frame.sparse_depth_m = convert.depth_image_to_metres(msg)
                return waited_s
            xyz = convert.pointcloud2_to_xyz(msg)
            extrinsics = self.extrinsics or StaticExtrinsics(cfg.static_translation, cfg.static_rotation)
            transform, tf_error = extrinsics.lookup_at(
                msg.header.frame_id, frame.frame_id, source_stamp_ns=stamp_to_ns(msg.header.stamp),
                image_stamp_ns=frame.stamp_ns, fixed_frame=cfg.fixed_frame, timeout_s=cfg.tf_timeout)
            if transform is None:
                via = f" through {cfg.fixed_frame}" if cfg.fixed_frame else ""
                self._report.bad_input("no_transform", f"no transform {msg.header.frame_id} -> {frame.frame_id}"
                                       f"{via}: {tf_error} (frame has no metric points)")
                return waited_s
            frame.points_m, frame.T_camera_points = xyz, transform
        except InputError as exc:
            self._report.bad_input(f"bad_sparse_{cfg.sparse_input}", f"{topic}: {exc} (frame processed without "
                                   "metric points)")
        return waited_s

    def count_dropped_points(self, cfg: NodeConfig, result: FrameResult) -> None:
        """Count this frame's dropped sparse points by reason; non-finite ones are bad input (WARN), the others
        (behind the camera, outside the image, out of range, see-through: the normal culling of a LiDAR sweep) are
        counted in /diagnostics and noted at INFO, rarely."""
        # The frame's alignment outcome, typed, for the /diagnostics level (frame/stats.py assess_health).
        self._stats.aligned(result.alignment.state, result.alignment.reason)
        dropped = result.alignment.dropped_points
        if not dropped:
            return
        used = result.alignment.points_used
        total = used + sum(dropped.values())
        self._stats.sparse_points(total, used, dropped)
        topic = "sparse_points" if cfg.sparse_input == "points" else "sparse_depth"
        for reason, count in dropped.items():
            if not count:
                continue
            text = f"{topic}: {count} of {total} points dropped: {DROP_REASONS.get(reason, reason)}"
            if reason == "non_finite":
                self._report.bad_input(f"bad_{topic}.non_finite", text)
            else:
                self._report.note(f"{topic}.{reason}", text + " (counted in /diagnostics)")
