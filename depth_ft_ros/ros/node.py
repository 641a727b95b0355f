"""`depth_ft_node`: camera topics in; metric depth, normals and point clouds out.

Threading: subscription callbacks only store messages (never block); one worker thread takes the newest image
(older unprocessed ones are dropped and counted), pairs it with camera_info and sparse points by stamp, runs
the FramePipeline and publishes. The model does not run while nobody subscribes to any output.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from depth_ft_ros.core.camera import PinholeCamera
from depth_ft_ros.core.config import NodeConfig
from depth_ft_ros.core.errors import ConfigError, DepthFtError, InputError
from depth_ft_ros.core.frame_sync import LatestSlot, StampBuffer
from depth_ft_ros.core.pipeline import FrameInput, FramePipeline, Outputs, camera_for_image
from depth_ft_ros.core.sparse import transform_points
from depth_ft_ros.core.stats import NodeStats
from depth_ft_ros.ros import convert
from depth_ft_ros.ros.diagnostics import build_diagnostics
from depth_ft_ros.ros.extrinsics import Extrinsics
from depth_ft_ros.ros.middleware import describe_middleware, prefer_async_publication
from depth_ft_ros.ros.params import (
    CONFIG_PARAMETERS,
    RECONFIGURE_ONLY,
    apply_changes,
    declare_parameters,
    live_config,
)
from depth_ft_ros.ros.publishers import FramePublishers

WARN_THROTTLE_S = 5.0


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class DepthFtNode(LifecycleNode):
    def __init__(self, node_name: str = "depth_ft_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        # ConfigError: invalid configuration, fail at start. `config` is what runs; `_declared` holds parameter
        # changes too, some of which (RECONFIGURE_ONLY) wait for the next configure.
        self.config: NodeConfig = declare_parameters(self)
        self._declared = self.config
        self.stats = NodeStats()
        self.pipeline: FramePipeline | None = None
        self.last_alignment: dict[str, str] = {}
        self._pubs: FramePublishers | None = None
        self._subs: list[Any] = []
        self._extrinsics: Extrinsics | None = None
        self._images: LatestSlot[tuple[Any, float]] = LatestSlot()
        self._infos: StampBuffer[CameraInfo] = StampBuffer(maxlen=30)
        self._sparse: StampBuffer[Any] = StampBuffer(maxlen=10)
        self._worker: threading.Thread | None = None
        self._running = threading.Event()
        self._last_stamp_ns: int | None = None
        self._work_start_s = 0.0
        self._stage = "image"  # the input being converted when an InputError is raised
        self._camera_cache: tuple[tuple[Any, ...], PinholeCamera] | None = None
        self._bridge: Any = None  # a cv_bridge.CvBridge on robots (use_cv_bridge), else None
        self._last_warn_s: dict[str, float] = {}
        self._middleware = describe_middleware()  # the environment the participant was created with
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self.config.diagnostics_period, self._publish_diagnostics)

    # -- lifecycle -----------------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self.config = self._declared
        try:
            self.pipeline = FramePipeline.load(cfg)
        except DepthFtError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # rclpy's lifecycle swallows callback exceptions without a word: say it here
            self.get_logger().error(f"configure failed: {exc!r}\n{traceback.format_exc()}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"models loaded: {self.pipeline.describe()}")
        self._pubs = FramePublishers(self, publish_relative=cfg.publish_relative)
        # Measured across processes (README, "QoS"): reliable depth 1 receives every frame a reliable driver sends
        # and keeps only the newest when inference is slower; best effort lost most 1 MB images.
        image_qos = QoSProfile(depth=1) if cfg.reliable_qos else qos_profile_sensor_data
        qos = QoSProfile(depth=10) if cfg.reliable_qos else qos_profile_sensor_data
        if cfg.image_transport == "compressed":
            self._subs.append(self.create_subscription(CompressedImage, "image/compressed", self._on_image,
                                                       image_qos))
        else:
            self._subs.append(self.create_subscription(Image, "image", self._on_image, image_qos))
        self._subs.append(self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos))
        if cfg.sparse_input == "points":
            self._subs.append(self.create_subscription(PointCloud2, "sparse_points", self._on_sparse, qos))
        elif cfg.sparse_input == "depth":
            self._subs.append(self.create_subscription(Image, "sparse_depth", self._on_sparse, qos))
        self._extrinsics = Extrinsics(self, cfg.use_tf, cfg.static_translation, cfg.static_rotation)
        self._bridge = convert.load_cv_bridge() if cfg.use_cv_bridge else None
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._running.set()
        self._worker = threading.Thread(target=self._work, name="depth_ft_worker", daemon=True)
        self._worker.start()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._release()
        return super().on_shutdown(state)

    def _stop_worker(self) -> None:
        self._running.clear()
        self._images.close()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            if self._worker.is_alive():  # a frame still in the network (slow CPU): keep its models alive
                self.get_logger().warning("worker still busy after 30 s; it stops after its current frame")
            else:
                self._worker = None
        self._images = LatestSlot()

    def _release(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()
        if self._pubs is not None:
            self._pubs.destroy()
            self._pubs = None
        if self._extrinsics is not None:
            self._extrinsics.close()
            self._extrinsics = None
        if self.pipeline is not None:
            if self._worker is not None and self._worker.is_alive():
                self.get_logger().warning("models not freed: the worker is still running a frame")
            else:
                self.pipeline.close()  # frees GPU memory
            self.pipeline = None
        self._infos.clear()
        self._sparse.clear()

    # -- callbacks: store and return -----------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        arrival_s = time.monotonic()
        self.stats.frame_in(arrival_s)
        if not self._running.is_set():  # configured but not active (lifecycle): counted, not processed
            self.stats.drop("inactive")
            return
        if self._images.put((msg, arrival_s)):
            self.stats.drop("superseded")  # a newer frame arrived before the worker was free

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._infos.add(stamp_to_ns(msg.header.stamp), msg)

    def _on_sparse(self, msg: Any) -> None:
        self._sparse.add(stamp_to_ns(msg.header.stamp), msg)

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        # Parameters that are not ours (use_sim_time, ...) belong to rclpy: accept them untouched.
        changes = {p.name: (list(p.value) if isinstance(p.value, (list, tuple)) or hasattr(p.value, "tolist")
                            else p.value) for p in params if p.name in CONFIG_PARAMETERS}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            declared = apply_changes(self._declared, changes)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        deferred = sorted(set(changes) & RECONFIGURE_ONLY)
        if deferred:
            self.get_logger().info(f"{', '.join(deferred)} take effect at the next configure")
        self._declared = declared
        self.config = live_config(declared, self.config)
        if self.pipeline is not None:
            self.pipeline.update_config(self.config)
        if self._extrinsics is not None:
            self._extrinsics.update_static(self.config.static_translation, self.config.static_rotation)
        if "diagnostics_period" in changes:
            self._diag_timer.cancel()
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(self.config.diagnostics_period, self._publish_diagnostics)
        return SetParametersResult(successful=True)

    # -- worker --------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while self._running.is_set():
            item = self._images.take(timeout_s=0.1)
            if item is None:
                continue
            msg, arrival_s = item
            self._work_start_s = time.monotonic()
            if self._pubs is None or not self._pubs.anyone_listening():
                self.stats.drop("no_subscribers")
                continue
            try:
                self._process(msg, arrival_s)
            except InputError as exc:
                self.stats.drop("bad_input")  # the frame produced no output: count it as dropped too
                self._warn(f"bad_{self._stage}", str(exc))
            except Exception as exc:  # keep running: one bad frame must not kill the node
                self.stats.drop("internal_error")
                self._warn("internal_error", f"{exc!r}")
                self.get_logger().debug(traceback.format_exc())

    def _process(self, msg: Image | CompressedImage, arrival_s: float) -> None:
        cfg = self.config
        pipeline, pubs = self.pipeline, self._pubs
        assert pipeline is not None and pubs is not None
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns:
            # The alignment filter resets itself on a stamp going backwards (and reports it).
            self._warn("stamp_backwards", f"image stamp went backwards by {(self._last_stamp_ns - stamp_ns) / 1e9:.3f}"
                       " s: alignment state reset (bag restarted?)")
        self._last_stamp_ns = stamp_ns

        t0 = time.perf_counter()
        self._stage = "image"  # names the bad input in warnings and diagnostics
        rgb = self._to_rgb(msg)
        t1 = time.perf_counter()
        tolerance_ns = int(cfg.sync_tolerance * 1e9)
        info = self._infos.wait_nearest(stamp_ns, tolerance_ns, cfg.sync_wait)
        t2 = time.perf_counter()
        if info is None:
            self.stats.drop("no_camera_info")
            self._warn("no_camera_info", f"no camera_info within {cfg.sync_tolerance} s of the image stamp: "
                       "frame dropped")
            return
        self._stage = "camera_info"
        camera = self._camera_for(info, rgb.shape[1], rgb.shape[0])
        camera_frame = msg.header.frame_id or info.header.frame_id

        frame = FrameInput(rgb=rgb, camera=camera, stamp_ns=stamp_ns)
        t3 = time.perf_counter()
        sparse_wait_s = 0.0
        if cfg.sparse_input != "none" and cfg.alignment != "off":
            sparse_wait_s = self._attach_sparse(cfg, frame, stamp_ns, camera_frame)
        t4 = time.perf_counter()

        self._stage = "frame"
        result = pipeline.process(frame, Outputs(normals=pubs.wants_normals(), cloud=pubs.wants_cloud()))
        t5 = time.perf_counter()
        pubs.publish(msg.header, result, rgb)
        result.timings_ms.update({
            "convert_image": (t1 - t0 + t3 - t2) * 1e3,  # image + camera_info
            "convert_points": (t4 - t3 - sparse_wait_s) * 1e3,  # decode, transform into the camera frame
            "sync_wait": (t2 - t1 + sparse_wait_s) * 1e3,
            "publish": (time.perf_counter() - t5) * 1e3,  # build and publish every output message
        })
        self.last_alignment = {
            "alignment.state": result.alignment.state, "alignment.method": result.alignment.method,
            "alignment.scale": f"{result.alignment.scale:.5g}", "alignment.shift": f"{result.alignment.shift:.5g}",
            "alignment.points_used": str(result.alignment.points_used),
            "alignment.inliers": str(result.alignment.inliers),
            "alignment.filter": result.alignment.filter_action,
            "alignment.reason": result.alignment.reason,
        }
        if result.alignment.state == "relative-only" and cfg.alignment != "off":
            self.stats.warn("no_fit", result.alignment.reason)
        done_s = time.monotonic()
        self.stats.frame_out(arrival_s, (done_s - arrival_s) * 1e3, (done_s - self._work_start_s) * 1e3,
                             result.timings_ms)

    def _to_rgb(self, msg: Image | CompressedImage) -> np.ndarray:
        """cv_bridge when configured and available; the numpy path otherwise, and for what cv_bridge refuses
        (e.g. 8UC3): a message is bad only when neither can read it."""
        to_rgb = convert.compressed_to_rgb if isinstance(msg, CompressedImage) else convert.image_to_rgb
        if self._bridge is not None:
            try:
                return to_rgb(msg, bridge=self._bridge)
            except InputError:
                pass
        return to_rgb(msg)

    def _camera_for(self, info: CameraInfo, width: int, height: int) -> PinholeCamera:
        """The camera of this frame; the same object while camera_info does not change, so its per-pixel rays
        (cached on the camera) are computed once, not per frame."""
        key = (info.width, info.height, tuple(info.k), tuple(info.p), tuple(info.d), info.distortion_model,
               info.binning_x, info.binning_y, info.roi.x_offset, info.roi.y_offset, info.roi.width,
               info.roi.height, width, height)
        if self._camera_cache is None or self._camera_cache[0] != key:
            camera = camera_for_image(convert.camera_info_to_camera(info), width, height)
            self._camera_cache = (key, camera)
        return self._camera_cache[1]

    def _attach_sparse(self, cfg: NodeConfig, frame: FrameInput, stamp_ns: int, camera_frame: str) -> float:
        """Pair the frame with its sparse points, in the camera frame; returns the seconds spent waiting.

        Bad sparse input is warned about and counted; the frame goes on without metric points (it still gets
        depth/relative and normals, and a held fit)."""
        t0 = time.perf_counter()
        msg = self._sparse.wait_nearest(stamp_ns, int(cfg.sync_tolerance * 1e9), cfg.sync_wait)
        waited_s = time.perf_counter() - t0
        if msg is None:
            self.stats.warn("no_sparse_points", "no sparse points within sync_tolerance")
            return waited_s
        try:
            if cfg.sparse_input == "depth":
                frame.sparse_depth_m = convert.depth_image_to_metres(msg)
                return waited_s
            xyz = convert.pointcloud2_to_xyz(msg)
            assert self._extrinsics is not None
            transform = self._extrinsics.lookup(msg.header.frame_id, camera_frame)
            if transform is None:
                self._warn("no_transform", f"no transform {msg.header.frame_id} -> {camera_frame} yet: frame has "
                           "no metric points")
                return waited_s
            frame.points_cam_m = transform_points(xyz, transform)
        except InputError as exc:
            self._warn(f"bad_sparse_{cfg.sparse_input}", f"{exc} (frame processed without metric points)")
        return waited_s

    # -- reporting -----------------------------------------------------------------------------------------

    def _warn(self, kind: str, message: str) -> None:
        self.stats.warn(kind, message)
        now_s = time.monotonic()
        if now_s - self._last_warn_s.get(kind, -1e9) >= WARN_THROTTLE_S:
            self._last_warn_s[kind] = now_s
            self.get_logger().warning(message)

    def _publish_diagnostics(self) -> None:
        extra = {"extrinsics": self._extrinsics.source if self._extrinsics else "",
                 "image_conversion": "cv_bridge" if self._bridge is not None else "numpy",
                 "middleware": self._middleware, **self.last_alignment}
        if self.pipeline is not None:
            extra.update(self.pipeline.describe())
        msg = build_diagnostics(self.get_name(), self.get_clock().now().to_msg(), self.stats.snapshot(), extra,
                                configured=self.pipeline is not None, active=self._running.is_set())
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    prefer_async_publication()  # before rclpy.init: read when the DDS participant is created
    rclpy.init(args=args)
    try:
        node = DepthFtNode()
    except ConfigError as exc:
        print(f"depth_ft_node: invalid configuration: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if node.config.autostart:
            node.trigger_configure()  # loads the models: may take long, and may be interrupted
            if node.pipeline is None:
                return 1
            node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node._stop_worker()
        node._release()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
