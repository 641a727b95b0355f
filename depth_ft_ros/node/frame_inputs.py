"""The inputs of one frame besides its image: camera_info and sparse points, stored by the subscription callbacks
and paired with an image by stamp in the worker; and how their faults are named and counted.

camera_info is converted and checked when it arrives (D against its distortion model, K, P, ROI): a refused one
is warned about once per message and stored as its InputError, so the frame it pairs with is dropped as bad
input, not as "no camera_info".
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.errors import InputError
from depth_ft_ros.frame.processor import FrameInput, FrameResult, camera_for_image
from depth_ft_ros.frame.stats import NodeStats
from depth_ft_ros.frame.sync import StampBuffer
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.geometry.sparse import DROP_REASONS, transform_points
from depth_ft_ros.msgs import convert
from depth_ft_ros.msgs.camera_info import CameraInfoCache
from depth_ft_ros.msgs.serialized import SerializedMessage
from depth_ft_ros.node.extrinsics import Extrinsics
from depth_ft_ros.node.reporting import Reporter

PairedCamera = tuple[str, PinholeCamera | InputError]  # (camera_info frame_id, camera or why it was refused)


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def store_sparse(buffer: StampBuffer[Any], msg: Any, reports: list[Reporter]) -> None:
    """Store a sparse message by its stamp (read from the bytes of a SerializedMessage); one whose stamp cannot
    be read is bad input for every camera that would pair with it."""
    try:
        stamp_ns = msg.stamp_ns if isinstance(msg, SerializedMessage) else stamp_to_ns(msg.header.stamp)
    except InputError as exc:
        for report in reports:
            report.bad_input("bad_sparse_message", f"sparse message refused: {exc}")
        return
    buffer.add(stamp_ns, msg)


class FrameInputs:
    """One camera's side inputs. `sparse`: a buffer shared with other cameras (one LiDAR seen by several
    cameras, filled by one subscription), else this camera's own."""

    def __init__(self, stats: NodeStats, report: Reporter, sparse: StampBuffer[Any] | None = None) -> None:
        self._stats = stats
        self._report = report
        self._infos: StampBuffer[PairedCamera] = StampBuffer(maxlen=30)
        self._info_cache = CameraInfoCache()
        self._sparse: StampBuffer[Any] = sparse if sparse is not None else StampBuffer(maxlen=10)
        self._scaled_camera: tuple[tuple[int, int, int], PinholeCamera] | None = None
        self.bridge: Any = None  # a cv_bridge.CvBridge on robots (use_cv_bridge), else None

    def clear(self) -> None:
        self._infos.clear()
        self._sparse.clear()

    # -- callbacks (executor thread) ------------------------------------------------------------------------

    def on_camera_info(self, msg: CameraInfo) -> None:
        try:
            camera: PinholeCamera | InputError = self._info_cache.camera(msg)
        except InputError as exc:
            self._report.bad_input("bad_camera_info", f"camera_info refused: {exc}", throttle_key=str(exc))
            camera = exc
        self._infos.add(stamp_to_ns(msg.header.stamp), (msg.header.frame_id, camera))

    def on_sparse(self, msg: Any) -> None:
        """A sparse message, deserialized or (raw subscription) a SerializedMessage, stored by its stamp."""
        store_sparse(self._sparse, msg, [self._report])

    # -- worker thread --------------------------------------------------------------------------------------

    def to_rgb(self, msg: Image | CompressedImage) -> np.ndarray:
        """cv_bridge when configured and available; the numpy path otherwise, and for what cv_bridge refuses
        (e.g. 8UC3): a message is bad only when neither can read it."""
        to_rgb = convert.compressed_to_rgb if isinstance(msg, CompressedImage) else convert.image_to_rgb
        if self.bridge is not None:
            try:
                return to_rgb(msg, bridge=self.bridge)
            except InputError:
                pass
        return to_rgb(msg)

    def paired_camera(self, cfg: NodeConfig, stamp_ns: int) -> PairedCamera | None:
        """The camera_info nearest the stamp within sync_tolerance, waiting up to sync_wait; None if none came."""
        return self._infos.wait_nearest(stamp_ns, int(cfg.sync_tolerance * 1e9), cfg.sync_wait)

    def camera_for(self, camera: PinholeCamera, width: int, height: int) -> PinholeCamera:
        """The camera of this frame, scaled to the image; the same object while camera_info and the image size
        do not change, so its per-pixel rays (cached on the camera) are computed once, not per frame."""
        key = (id(camera), width, height)
        if self._scaled_camera is None or self._scaled_camera[0] != key:
            self._scaled_camera = (key, camera_for_image(camera, width, height))
        return self._scaled_camera[1]

    def attach_sparse(self, cfg: NodeConfig, frame: FrameInput, camera_frame: str,
                      extrinsics: Extrinsics | None) -> float:
        """Pair the frame with its sparse points, in the camera frame; returns the seconds spent waiting.

        Bad sparse input is warned about and counted; the frame goes on without metric points (it still gets
        depth/relative and normals, and a held fit)."""
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
            assert extrinsics is not None
            transform, tf_error = extrinsics.lookup_at(
                msg.header.frame_id, camera_frame, source_stamp_ns=stamp_to_ns(msg.header.stamp),
                image_stamp_ns=frame.stamp_ns, fixed_frame=cfg.fixed_frame, timeout_s=cfg.tf_timeout)
            if transform is None:
                via = f" through {cfg.fixed_frame}" if cfg.fixed_frame else ""
                self._report.bad_input("no_transform", f"no transform {msg.header.frame_id} -> {camera_frame}{via}: "
                                       f"{tf_error} (frame has no metric points)")
                return waited_s
            frame.points_cam_m = transform_points(xyz, transform)
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
