"""Stand-in for the frame-path API (FrameProcessor, CameraInputs, output_messages) over the current FramePipeline,
with the same signatures, until depth_ft_ros.frame.processor / msgs.frame_inputs / msgs.outputs provide it.
framepath.py imports the real one first; this module goes when they exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from std_msgs.msg import Header

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.errors import InputError
from depth_ft_ros.frame.colorize import colorize_depth, colorize_normals
from depth_ft_ros.frame.processor import FrameInput, FramePipeline, FrameResult, Outputs, camera_for_image
from depth_ft_ros.frame.sync import StampBuffer
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.geometry.pose import pose_to_matrix
from depth_ft_ros.geometry.sparse import transform_points
from depth_ft_ros.model.networks import Models
from depth_ft_ros.msgs import convert, names
from depth_ft_ros.msgs.camera_info import CameraInfoCache


@dataclass
class CameraFrame:
    camera_name: str
    rgb: np.ndarray
    camera: PinholeCamera
    stamp_ns: int
    frame_id: str
    points_cam_m: np.ndarray | None = None
    sparse_depth_m: np.ndarray | None = None
    outputs: Outputs = field(default_factory=Outputs)


class FrameFailure(Exception):
    def __init__(self, stage: str, reason: str, camera_name: str, stamp_ns: int, text: str = "") -> None:
        super().__init__(text or reason)
        self.stage, self.reason, self.camera_name, self.stamp_ns = stage, reason, camera_name, stamp_ns


class StaticExtrinsics:
    def __init__(self, translation: list[float], rotation_xyzw: list[float]) -> None:
        self._matrix = pose_to_matrix(translation, rotation_xyzw)

    def lookup_at(self, source_frame: str, target_frame: str, source_stamp_ns: int, image_stamp_ns: int,
                  fixed_frame: str, timeout_s: float) -> tuple[np.ndarray | None, str]:
        if not source_frame or source_frame == target_frame:
            return np.eye(4), ""
        return self._matrix, ""


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class CameraInputs:
    def __init__(self, camera_name: str, sparse: StampBuffer[Any] | None = None,
                 extrinsics: StaticExtrinsics | None = None) -> None:
        self.camera_name = camera_name
        self._infos: StampBuffer[tuple[str, PinholeCamera | InputError]] = StampBuffer(maxlen=30)
        self._sparse: StampBuffer[Any] = sparse if sparse is not None else StampBuffer(maxlen=10)
        self._cache = CameraInfoCache()
        self._extrinsics = extrinsics
        self.on_problem: Callable[[str, str], None] = lambda kind, text: None

    def add_camera_info(self, msg: Any) -> None:
        try:
            camera: PinholeCamera | InputError = self._cache.camera(msg)
        except InputError as exc:
            camera = exc
        self._infos.add(_stamp_ns(msg.header.stamp), (msg.header.frame_id, camera))

    def add_sparse(self, msg: Any) -> None:
        self._sparse.add(_stamp_ns(msg.header.stamp), msg)

    def assemble(self, image_msg: Any, config: NodeConfig, now_ns: int = 0,
                 outputs: Outputs | None = None) -> CameraFrame:
        stamp_ns = _stamp_ns(image_msg.header.stamp)
        fail = lambda stage, reason, text: FrameFailure(stage, reason, self.camera_name, stamp_ns, text)  # noqa: E731
        try:
            rgb = (convert.compressed_to_rgb(image_msg) if hasattr(image_msg, "format")
                   else convert.image_to_rgb(image_msg))
        except InputError as exc:
            raise fail("image", "bad_input", str(exc)) from None
        paired = self._infos.wait_nearest(stamp_ns, int(config.sync_tolerance * 1e9), 0.0)
        if paired is None:
            raise fail("camera_info", "no_camera_info", "no camera_info within sync_tolerance")
        info_frame, camera = paired
        if isinstance(camera, InputError):
            raise fail("camera_info", "bad_input", str(camera))
        try:
            camera = camera_for_image(camera, rgb.shape[1], rgb.shape[0])
        except InputError as exc:
            raise fail("camera_info", "bad_input", str(exc)) from None
        frame_id = image_msg.header.frame_id or info_frame or config.camera_frame
        if not frame_id:
            raise fail("image_frame_id", "bad_input", "no frame_id")
        frame = CameraFrame(self.camera_name, rgb, camera, stamp_ns, frame_id, outputs=outputs or Outputs())
        if config.sparse_input != "none" and config.alignment != "off":
            msg = self._sparse.wait_nearest(stamp_ns, int(config.sync_tolerance * 1e9), 0.0)
            if msg is None:
                self.on_problem("no_sparse_points", "no sparse message within sync_tolerance")
                return frame
            try:
                if config.sparse_input == "depth":
                    frame.sparse_depth_m = convert.depth_image_to_metres(msg)
                    return frame
                xyz = convert.pointcloud2_to_xyz(msg)
                assert self._extrinsics is not None
                transform, error = self._extrinsics.lookup_at(msg.header.frame_id, frame_id,
                                                              _stamp_ns(msg.header.stamp), stamp_ns, "", 0.0)
                if transform is None:
                    self.on_problem("no_transform", error)
                    return frame
                frame.points_cam_m = transform_points(xyz, transform)
            except InputError as exc:
                self.on_problem("bad_sparse_points", str(exc))
        return frame


class FrameProcessor:
    def __init__(self, networks: Models, config: NodeConfig) -> None:
        self.networks = networks
        self.config = config
        self._pipelines: dict[str, FramePipeline] = {}

    def _pipeline(self, camera_name: str) -> FramePipeline:
        if camera_name not in self._pipelines:
            self._pipelines[camera_name] = FramePipeline(self.config, self.networks)
        return self._pipelines[camera_name]

    def __call__(self, frames: list[CameraFrame]) -> list[FrameResult | FrameFailure]:
        pipelines = [self._pipeline(f.camera_name) for f in frames]
        predicted = self.networks.predict([f.rgb for f in frames],
                                          [p.wants_normals(f.outputs) for p, f in zip(pipelines, frames, strict=True)],
                                          self.config.max_batch)
        out: list[FrameResult | FrameFailure] = []
        for pipeline, frame, pred in zip(pipelines, frames, predicted, strict=True):
            if pred.error is not None:
                out.append(FrameFailure("network", "internal_error", frame.camera_name, frame.stamp_ns,
                                        str(pred.error)))
                continue
            try:
                result = pipeline.finish(FrameInput(frame.rgb, frame.camera, frame.stamp_ns, frame.points_cam_m,
                                                    frame.sparse_depth_m), pred, frame.outputs)
            except InputError as exc:
                out.append(FrameFailure("frame", "bad_input", frame.camera_name, frame.stamp_ns, str(exc)))
                continue
            result.camera_name = frame.camera_name  # type: ignore[attr-defined]
            result.frame_id = frame.frame_id  # type: ignore[attr-defined]
            out.append(result)
        return out


def output_messages(result: FrameResult, wanted: Callable[[str], bool],
                    publish_relative: bool) -> list[tuple[str, Any]]:
    camera = getattr(result, "camera_name", "")
    sec, nanosec = divmod(result.stamp_ns, 1_000_000_000)
    header = Header(frame_id=getattr(result, "frame_id", ""))
    header.stamp.sec, header.stamp.nanosec = sec, nanosec
    out: list[tuple[str, Any]] = []

    def add(topic: str, build: Callable[[], Any]) -> bool:
        name = names.of_camera(camera, topic)
        if wanted(name):
            out.append((name, build()))
            return True
        return False

    depth, relative, confidence, normals, cloud = (result.depth_m, result.relative, result.confidence,
                                                   result.normals, result.cloud)
    depth_images = False
    if depth is not None:
        depth_images |= add(names.DEPTH_IMAGE, lambda: convert.depth_to_msg(depth, header))
    if publish_relative and relative is not None:
        depth_images |= add(names.DEPTH_RELATIVE, lambda: convert.depth_to_msg(relative, header))
    if confidence is not None:
        depth_images |= add(names.DEPTH_CONFIDENCE, lambda: convert.depth_to_msg(confidence, header))
    shown = depth if depth is not None else relative
    if shown is not None:
        inverse = depth is not None or result.space != "disparity"
        depth_images |= add(names.DEPTH_COLORIZED,
                            lambda: convert.bgr_to_msg(colorize_depth(shown, inverse=inverse), header))
    if depth_images or depth is not None:
        add(names.DEPTH_CAMERA_INFO, lambda: convert.camera_to_camera_info(result.camera, header))
    if normals is not None:
        shown_normals = add(names.NORMALS_IMAGE, lambda: convert.normals_to_msg(normals, header))
        shown_normals |= add(names.NORMALS_COLORIZED, lambda: convert.bgr_to_msg(colorize_normals(normals), header))
        if shown_normals:
            add(names.NORMALS_CAMERA_INFO, lambda: convert.camera_to_camera_info(result.camera, header))
    if cloud is not None:
        add(names.POINTS, lambda: convert.structured_to_pointcloud2(cloud, header, is_dense=False))
    return out
