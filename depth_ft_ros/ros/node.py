"""`depth_ft_node`: camera topics in; metric depth, normals and point clouds out.

Threading: subscription callbacks only store messages (never block); one worker thread takes the newest image
(older unprocessed ones are dropped and counted), pairs it with camera_info and sparse points by stamp, runs
the FramePipeline and publishes. The model does not run while nobody subscribes to any output.

The worker owns the pipeline. A parameter change is validated once, in the set-parameters callback, and handed
to the worker as a new config with a generation number; the worker applies it between two frames, so a frame
runs with one configuration from start to end (frame_config_generations records it for every published frame).
"""

from __future__ import annotations

import re
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from depth_ft_ros.core.config import NodeConfig
from depth_ft_ros.core.errors import ConfigError, DepthFtError, InputError
from depth_ft_ros.core.frame_sync import LatestSlot
from depth_ft_ros.core.pipeline import FrameInput, FramePipeline, Outputs
from depth_ft_ros.core.stats import NodeStats
from depth_ft_ros.ros import convert, names
from depth_ft_ros.ros.diagnostics import build_diagnostics
from depth_ft_ros.ros.extrinsics import Extrinsics
from depth_ft_ros.ros.frame_inputs import FrameInputs, stamp_to_ns
from depth_ft_ros.ros.input_qos import InputSubscriptions
from depth_ft_ros.ros.middleware import describe_middleware, prefer_async_publication
from depth_ft_ros.ros.params import (
    CONFIG_PARAMETERS,
    RECONFIGURE_ONLY,
    apply_changes,
    declare_parameters,
    live_config,
)
from depth_ft_ros.ros.publishers import FramePublishers
from depth_ft_ros.ros.reporting import Reporter
from depth_ft_ros.ros.worker import FrameWorker

ImageItem = tuple[Any, float]  # (Image or CompressedImage, arrival monotonic s)
QOS_RECHECK_S = 1.0  # how often `auto` input QoS looks at the publishers again


class DepthFtNode(LifecycleNode):
    def __init__(self, node_name: str = "depth_ft_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        # ConfigError: invalid configuration, fail at start. `config` is what runs; `_declared` holds parameter
        # changes too, some of which (RECONFIGURE_ONLY) wait for the next configure.
        self.config: NodeConfig = declare_parameters(self)
        self._declared = self.config
        self.stats = NodeStats()
        self._report = Reporter(self.get_logger(), self.stats)
        self.pipeline: FramePipeline | None = None
        self.last_alignment: dict[str, str] = {}
        self._pubs: FramePublishers | None = None
        self._subs: InputSubscriptions | None = None
        self._configure_error = ""  # why the last configure failed (models not loaded): /diagnostics ERROR
        self._camera_frame = ""  # the camera's optical frame, from the last frame
        self._last_image_s = self._active_since_s = 0.0  # monotonic: last image arrival, last activation
        self._extrinsics: Extrinsics | None = None
        self._inputs = FrameInputs(self.stats, self._report)  # camera_info and sparse points, by stamp
        self._worker: FrameWorker[ImageItem] | None = None
        self.worker_join_timeout_s = 30.0  # how long deactivate and a re-activation wait for a busy worker
        # Parameter hand-over: the callback puts (generation, config); the worker applies it between frames.
        self._config_lock = threading.Lock()
        self._pending_config: LatestSlot[tuple[int, NodeConfig]] = LatestSlot()
        self._generation = 0
        self._applied: tuple[int, NodeConfig] = (0, self.config)
        # Per published frame: the config generation the pipeline ran with at its start and at its end (-1: a
        # config the worker did not apply). Equal pairs = one configuration per frame.
        self.frame_config_generations: deque[tuple[int, int]] = deque(maxlen=1000)
        self._last_stamp_ns: int | None = None
        self._work_start_s = 0.0
        self._stage = "image"  # the input being converted when an InputError is raised
        self._middleware = describe_middleware()  # the environment the participant was created with
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self.config.diagnostics_period, self._publish_diagnostics)

    # -- lifecycle -----------------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._config_lock:  # no worker runs before activation: the declared values all apply now
            self._pending_config.take(timeout_s=0.0)
            cfg = self.config = self._declared
            self._applied = (self._generation, cfg)
        try:
            self.pipeline = FramePipeline.load(cfg)
        except DepthFtError as exc:  # names the parameter (depth_model, normals_model, ...)
            self._configure_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # rclpy's lifecycle swallows callback exceptions without a word: say it here
            self._configure_error = repr(exc)
            self.get_logger().error(f"configure failed: {exc!r}\n{traceback.format_exc()}")
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ""
        self.get_logger().info(f"models loaded: {self.pipeline.describe()}")
        self._pubs = FramePublishers(self, publish_relative=cfg.publish_relative)
        # Reliability per input from the publishers present (auto) or forced (README, "QoS"): reliable depth 1
        # for images keeps only the newest when inference is slower; best effort lost most 1 MB images between
        # processes, so it is used only where the publisher itself is best effort.
        compressed = cfg.image_transport == "compressed"
        inputs = [(CompressedImage if compressed else Image, names.IMAGE_COMPRESSED if compressed else names.IMAGE,
                   self._on_image, cfg.image_qos, 1),
                  (CameraInfo, names.CAMERA_INFO, self._inputs.on_camera_info, cfg.camera_info_qos, 10)]
        if cfg.sparse_input == "points":
            inputs.append((PointCloud2, names.SPARSE_POINTS, self._inputs.on_sparse, cfg.sparse_qos, 10))
        elif cfg.sparse_input == "depth":
            inputs.append((Image, names.SPARSE_DEPTH, self._inputs.on_sparse, cfg.sparse_qos, 10))
        self._subs = InputSubscriptions(self, inputs, self._on_incompatible_qos, QOS_RECHECK_S)
        self._extrinsics = Extrinsics(self, cfg.use_tf, cfg.static_translation, cfg.static_rotation)
        self._inputs.bridge = convert.load_cv_bridge() if cfg.use_cv_bridge else None
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        old = self._worker
        if old is not None and not old.join(self.worker_join_timeout_s):
            busy_s = time.monotonic() - old.busy_since_s if old.busy_since_s is not None else 0.0
            self.get_logger().error(f"activate refused: the previous worker is still processing a frame (for "
                                    f"{busy_s:.1f} s); two workers must not share the pipeline. Try again later.")
            return TransitionCallbackReturn.FAILURE
        with self._config_lock:
            self._apply_pending_config()  # changes made while inactive
            self._worker = FrameWorker(self._handle_frame, self._apply_pending_config, self._discard_frame)
            self._worker.start()
        self._active_since_s = time.monotonic()
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
        worker = self._worker
        if worker is None:
            return
        worker.stop()
        if worker.join(self.worker_join_timeout_s):
            with self._config_lock:
                self._worker = None
        else:  # a frame still in the network (slow CPU): keep its models alive; activation waits for it
            self.get_logger().warning(f"worker still busy after {self.worker_join_timeout_s:g} s; it stops after "
                                      "its current frame")

    def destroy_node(self) -> None:
        self._stop_worker()  # its thread would otherwise outlive the node
        super().destroy_node()

    def _release(self) -> None:
        if self._subs is not None:
            self._subs.destroy()
            self._subs = None
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
        self._inputs.clear()

    # -- input QoS -----------------------------------------------------------------------------------------

    def _on_incompatible_qos(self, topic: str, message: str) -> None:
        self._report.bad_input("incompatible_qos", message, throttle_key=topic)

    # -- callbacks: store and return -----------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        arrival_s = self._last_image_s = time.monotonic()
        self.stats.frame_in(arrival_s)
        worker = self._worker
        if worker is None or worker.stopping:  # configured but not active (lifecycle): counted, not processed
            self.stats.drop("inactive")
            return
        if worker.put((msg, arrival_s)):
            self.stats.drop("superseded")  # a newer frame arrived before the worker was free

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        """Validate (once) and hand over; the worker applies the new config between two frames."""
        ours = [p for p in params if p.name in CONFIG_PARAMETERS]  # use_sim_time etc. belong to rclpy
        if not ours:
            return SetParametersResult(successful=True)
        try:
            declared = apply_changes(self._declared, ours)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        names = {p.name for p in ours}
        deferred = sorted(names & RECONFIGURE_ONLY)
        if deferred:
            self.get_logger().info(f"{', '.join(deferred)} take effect at the next configure")
        with self._config_lock:
            self._declared = declared
            self._generation += 1
            self._pending_config.put((self._generation, live_config(declared, self._applied[1])))
            if self._worker is None:  # no worker owns the pipeline now: apply here
                self._apply_pending_config()
        if "diagnostics_period" in names:  # the timer belongs to the executor thread, which runs this callback
            self._diag_timer.cancel()
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(declared.diagnostics_period, self._publish_diagnostics)
        return SetParametersResult(successful=True)

    # -- worker --------------------------------------------------------------------------------------------

    def _apply_pending_config(self) -> None:
        """Between frames, in the worker (or with no worker, under _config_lock): the newest validated config."""
        pending = self._pending_config.take(timeout_s=0.0)
        if pending is None:
            return
        cfg = pending[1]
        try:
            if self.pipeline is not None:
                self.pipeline.update_config(cfg)
            if self._extrinsics is not None:
                self._extrinsics.update_static(cfg.static_translation, cfg.static_rotation)
        except Exception as exc:  # the worker must survive it; the values were validated, so this is a bug
            self._report.internal_error(exc, f"applying parameter change {pending[0]}")
        self.config = cfg
        self._applied = pending

    def _discard_frame(self, item: ImageItem) -> None:
        self.stats.drop("inactive")  # arrived while the worker was being stopped

    def _handle_frame(self, item: ImageItem) -> None:
        msg, arrival_s = item
        self._work_start_s = time.monotonic()
        if self._pubs is None or not self._pubs.anyone_listening():
            self.stats.drop("no_subscribers")
            return
        try:
            self._process(msg, arrival_s)
        except InputError as exc:
            self.stats.drop("bad_input")  # the frame produced no output: count it as dropped too
            self._report.bad_input(f"bad_{self._stage}", str(exc))
        except Exception as exc:  # keep running: one bad frame must not kill the node
            self.stats.drop("internal_error")
            self._report.internal_error(exc, f"processing the frame stamped {stamp_to_ns(msg.header.stamp)} ns "
                                        f"(stage: {self._stage})")

    def _check_stamp(self, cfg: NodeConfig, stamp_ns: int) -> None:
        """Refuse an image stamped far ahead of the node's clock: accepted, it would reset the alignment filter
        (stamps going backwards) for every later, correctly stamped frame."""
        now_ns = self.get_clock().now().nanoseconds
        if cfg.max_future_stamp <= 0 or now_ns <= 0:  # sim time before the first /clock: nothing to compare
            return
        ahead_s = (stamp_ns - now_ns) / 1e9
        if ahead_s > cfg.max_future_stamp:
            self._stage = "image_stamp"
            raise InputError(f"image header.stamp ({stamp_ns / 1e9:.3f} s) is {ahead_s:.3f} s ahead of the node's "
                             f"clock, more than max_future_stamp ({cfg.max_future_stamp:g} s): frame refused "
                             "(a camera clock not synchronized?)")
        if self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns:
            # The alignment filter resets itself on a stamp going backwards (and reports it).
            self._report.bad_input("stamp_backwards", f"image header.stamp went backwards by "
                                   f"{(self._last_stamp_ns - stamp_ns) / 1e9:.3f} s: alignment state reset "
                                   "(bag restarted?)")
        self._last_stamp_ns = stamp_ns

    def _process(self, msg: Image | CompressedImage, arrival_s: float) -> None:
        generation, cfg = self._applied
        pipeline, pubs = self.pipeline, self._pubs
        assert pipeline is not None and pubs is not None
        start_generation = generation if pipeline.config is cfg else -1
        stamp_ns = stamp_to_ns(msg.header.stamp)
        self._stage = "image"  # names the bad input in warnings and diagnostics
        self._check_stamp(cfg, stamp_ns)

        t0 = time.perf_counter()
        rgb = self._inputs.to_rgb(msg)
        t1 = time.perf_counter()
        paired = self._inputs.paired_camera(cfg, stamp_ns)
        t2 = time.perf_counter()
        if paired is None:
            self.stats.drop("no_camera_info")
            self._report.bad_input("no_camera_info", f"no camera_info within {cfg.sync_tolerance} s of the image "
                                   "stamp: frame dropped")
            return
        info_frame_id, info_camera = paired
        if isinstance(info_camera, InputError):  # counted and warned about when it arrived
            self.stats.drop("bad_input")
            return
        self._stage = "camera_info"
        camera = self._inputs.camera_for(info_camera, rgb.shape[1], rgb.shape[0])
        camera_frame = msg.header.frame_id or info_frame_id or cfg.camera_frame
        if not camera_frame:
            self._stage = "image_frame_id"
            raise InputError("image header.frame_id and camera_info header.frame_id are both empty and the "
                             "camera_frame parameter is not set: outputs would have no frame (set camera_frame, "
                             "e.g. camera_optical_frame)")
        self._camera_frame = camera_frame
        header = Header(stamp=msg.header.stamp, frame_id=camera_frame)  # every output's stamp and frame

        frame = FrameInput(rgb=rgb, camera=camera, stamp_ns=stamp_ns)
        t3 = time.perf_counter()
        sparse_wait_s = 0.0
        if cfg.sparse_input != "none" and cfg.alignment != "off":
            sparse_wait_s = self._inputs.attach_sparse(cfg, frame, camera_frame, self._extrinsics)
        t4 = time.perf_counter()

        self._stage = "frame"
        result = pipeline.process(frame, Outputs(normals=pubs.wants_normals(), cloud=pubs.wants_cloud(),
                                                 confidence=pubs.wants_confidence()))
        t5 = time.perf_counter()
        pubs.publish(header, result)
        self._inputs.count_dropped_points(cfg, result)
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
        end_generation, end_cfg = self._applied
        self.frame_config_generations.append(
            (start_generation, end_generation if pipeline.config is end_cfg else -1))
        done_s = time.monotonic()
        self.stats.frame_out(arrival_s, (done_s - arrival_s) * 1e3, (done_s - self._work_start_s) * 1e3,
                             result.timings_ms)

    # -- reporting -----------------------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        extra = {"extrinsics": self._extrinsics.source if self._extrinsics else "",
                 "image_conversion": "cv_bridge" if self._inputs.bridge is not None else "numpy",
                 "middleware": self._middleware, "config_generation": str(self._applied[0]),
                 **self.last_alignment}
        if self.pipeline is not None:
            extra.update(self.pipeline.describe())
        active = self._worker is not None and not self._worker.stopping
        model = self.pipeline.describe()["depth_model"] or self.pipeline.describe()["normals_model"] \
            if self.pipeline is not None else ""
        hardware_id = " ".join(part for part in (self._camera_frame or "camera", model) if part)
        msg = build_diagnostics(self.get_fully_qualified_name(), self.get_clock().now().to_msg(),
                                self.stats, extra, configured=self.pipeline is not None, active=active,
                                hardware_id=hardware_id, configure_error=self._configure_error,
                                conditions=self._conditions(active))
        self._diag_pub.publish(msg)

    def _conditions(self, active: bool) -> list[str]:
        """What is wrong right now, beyond counted faults: incompatible input QoS, no image for a while."""
        conditions = list(self._subs.incompatible.values()) if self._subs is not None else []
        timeout_s = self.config.input_timeout
        if active and timeout_s > 0:
            silent_s = time.monotonic() - max(self._last_image_s, self._active_since_s)
            if silent_s > timeout_s:
                image = self._subs.subscriptions[0].topic_name if self._subs is not None else names.IMAGE
                conditions.append(f"no image on {image} for {silent_s:.1f} s (input_timeout {timeout_s:g} s)")
        return conditions


def rcl_error_message(exc: BaseException) -> str:
    """rcl's argument error as one line: without the 'failed to initialize rcl' prefix and the C source
    locations (", at /project/src/rcl/arguments.c:352")."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    text = re.sub(r"^failed to initialize rcl: ", "", text)
    return re.sub(r"(, at [^,]+:\d+)+$", "", text)


def main(args: list[str] | None = None) -> int:
    prefer_async_publication()  # before rclpy.init: read when the DDS participant is created
    try:
        rclpy.init(args=args)
    except RuntimeError as exc:  # rclpy's RCLError: malformed --ros-args (e.g. `-p name:=`)
        print(f"depth_ft_node: invalid ROS arguments: {rcl_error_message(exc)}", file=sys.stderr)
        return 2
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
