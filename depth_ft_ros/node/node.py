"""`depth_ft_node`: camera topics in; metric depth, normals and point clouds out, for one camera or several
(`cameras`) over one copy of the models.

Threading: subscription callbacks only store messages (never block); one worker thread takes the newest image of
each camera (older unprocessed ones are dropped and counted per camera), waiting at most batch_window for the
other cameras' frames. Per step the worker (1) prepares each camera's frame from its messages
(node/camera_stream.py -> msgs/frame_inputs.py), (2) runs them through the FrameProcessor (frame/processor.py:
shared networks, then each camera's alignment, confidence, rectification and cloud) and (3) publishes each camera's
outputs (msgs/outputs.py). The models do not run for a camera whose outputs nobody subscribes to.

The worker owns the processor. A parameter change is validated once, in the set-parameters callback, and handed
to the worker as a new config with a generation number; the worker applies it between two steps and passes it to
the processor with the frames, so a frame runs with one configuration from start to end (frame_config_generations
records it for every published frame).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.errors import ConfigError, DepthFtError
from depth_ft_ros.frame.processor import FrameProcessor
from depth_ft_ros.frame.stats import NodeStats
from depth_ft_ros.frame.sync import LatestSlot, StampBuffer
from depth_ft_ros.model.networks import Models
from depth_ft_ros.msgs import convert, names
from depth_ft_ros.msgs.frame_inputs import store_sparse
from depth_ft_ros.msgs.serialized import SerializedMessage
from depth_ft_ros.node.camera_stream import CameraStream, FramePublishers, ImageItem, PreparedFrame
from depth_ft_ros.node.diagnostics import build_status, diagnostic_array
from depth_ft_ros.node.extrinsics import Extrinsics
from depth_ft_ros.node.input_qos import InputSubscriptions
from depth_ft_ros.node.middleware import describe_middleware
from depth_ft_ros.node.params import (
    CONFIG_PARAMETERS,
    RECONFIGURE_ONLY,
    CameraParams,
    apply_changes,
    camera_parameter_value,
    declare_camera_parameters,
    declare_parameters,
    live_config,
    split_camera_parameter,
)
from depth_ft_ros.node.worker import FrameWorker

QOS_RECHECK_S = 1.0  # how often `auto` input QoS looks at the publishers again
WORKER_WAIT_LOG_S = 5.0  # while teardown waits for the worker's frame, how often it says so
PUBLISH_FLUSH_S = 1.0  # at release, how long the last messages may take to reach reliable subscribers


class DepthFtNode(LifecycleNode):
    def __init__(self, node_name: str = "depth_ft_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        # ConfigError: invalid configuration, fail at start. `config` is what runs; `_declared` holds parameter
        # changes too, some of which (RECONFIGURE_ONLY) wait for the next configure.
        self.config: NodeConfig = declare_parameters(self)
        self._declared = self.config
        self._camera_params: dict[str, CameraParams] = declare_camera_parameters(self, self.config)
        self._stats: dict[str, NodeStats] = {}  # per camera name, kept across configure cycles
        self.streams: list[CameraStream] = self._make_streams(self.config)
        self.models: Models | None = None  # one copy of each network, shared by every camera
        self.processor: FrameProcessor | None = None  # the frame path over them; the worker drives it
        self._configure_error = ""  # why the last configure failed (models not loaded): /diagnostics ERROR
        self._active_since_s = 0.0  # monotonic: last activation
        self._tf: Extrinsics | None = None  # the tf2 listener the cameras' extrinsics share
        self._sparse_subs: InputSubscriptions | None = None  # the shared sparse topic (several cameras)
        self._worker: FrameWorker[ImageItem] | None = None
        self.worker_join_timeout_s = 30.0  # how long deactivate and a re-activation wait for a busy worker
        # Parameter hand-over: the callback puts (generation, config); the worker applies it between frames.
        self._config_lock = threading.Lock()
        self._pending_config: LatestSlot[tuple[int, NodeConfig]] = LatestSlot()
        self._generation = 0
        self._applied: tuple[int, NodeConfig] = (0, self.config)
        # Per published frame: the config generation applied when its step started and when it was published.
        # Equal pairs = no configuration was applied while the frame was in the processor.
        self.frame_config_generations: deque[tuple[int, int]] = deque(maxlen=1000)
        self._middleware = describe_middleware()  # the environment the participant was created with
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self.config.diagnostics_period, self._publish_diagnostics)

    @property
    def stats(self) -> NodeStats:
        """The first (with one camera: the) camera's counters; each camera's are streams[i].stats."""
        return self.streams[0].stats

    @property
    def last_alignment(self) -> dict[str, str]:
        """The first camera's last alignment report (each camera's: streams[i].last_alignment)."""
        return self.streams[0].last_alignment

    def stream(self, camera: str) -> CameraStream:
        return next(s for s in self.streams if s.camera == camera)

    def _make_streams(self, cfg: NodeConfig) -> list[CameraStream]:
        cameras = cfg.cameras or [""]
        return [CameraStream(c, self._stats.setdefault(c, NodeStats()),
                             self.get_logger().get_child(c) if c else self.get_logger()) for c in cameras]

    # -- lifecycle -----------------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._config_lock:  # no worker runs before activation: the declared values all apply now
            self._pending_config.take(timeout_s=0.0)
            cfg = self.config = self._declared
            self._applied = (self._generation, cfg)
        try:
            self._camera_params = declare_camera_parameters(self, cfg)
            self.models = Models.load(cfg)
        except DepthFtError as exc:  # names the parameter (depth_model, normals_model, ...)
            self._configure_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # rclpy's lifecycle swallows callback exceptions without a word: say it here
            self._configure_error = repr(exc)
            self.get_logger().error(f"configure failed: {exc!r}\n{traceback.format_exc()}")
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ""
        self.processor = FrameProcessor(self.models, cfg)
        self.streams = self._make_streams(cfg)
        self._tf = Extrinsics(self, cfg.use_tf, cfg.static_translation, cfg.static_rotation)
        bridge = convert.load_cv_bridge() if cfg.use_cv_bridge else None
        # Reliability per input from the publishers present (auto) or forced (README, "QoS"): best effort lost most
        # 1 MB images between processes, so it is used only where the publisher itself is best effort. Images
        # keep the last 5 in the reader: the callbacks only store bytes, so the queue drains at once, and an
        # executor held up by the worker (several cameras) still sees, and counts, every frame that came.
        sparse_type, sparse_topic = {"points": (PointCloud2, names.SPARSE_POINTS),
                                     "depth": (Image, names.SPARSE_DEPTH)}.get(cfg.sparse_input, (None, ""))
        shared_sparse = bool(cfg.cameras) and not cfg.sparse_per_camera and sparse_type is not None
        sparse_buffer: StampBuffer[Any] | None = StampBuffer(maxlen=10) if shared_sparse else None
        compressed = cfg.image_transport == "compressed"
        for index, stream in enumerate(self.streams):
            camera = stream.camera
            statics = self._camera_params.get(camera, {})
            extrinsics = self._tf.for_camera(statics.get("static_translation", cfg.static_translation),
                                             statics.get("static_rotation", cfg.static_rotation))
            stream.attach(FramePublishers(self, cfg.publish_relative, camera), extrinsics, sparse_buffer, bridge)

            def on_image(msg: Any, index: int = index) -> None:
                self._on_image(index, msg)

            # Images and sparse messages arrive as bytes (raw): only the ones the worker takes are deserialized.
            inputs = [(CompressedImage if compressed else Image,
                       names.of_camera(camera, names.IMAGE_COMPRESSED if compressed else names.IMAGE),
                       on_image, cfg.image_qos, 5, True),
                      (CameraInfo, names.of_camera(camera, names.CAMERA_INFO), stream.inputs.on_camera_info,
                       cfg.camera_info_qos, 10)]
            if sparse_type is not None and not shared_sparse:
                inputs.append((sparse_type, names.of_camera(camera, sparse_topic), stream.inputs.on_sparse,
                               cfg.sparse_qos, 10, True))
            stream.subs = InputSubscriptions(self, inputs, stream.on_incompatible_qos, QOS_RECHECK_S)
        if shared_sparse and sparse_buffer is not None:
            def on_sparse(msg: Any, buffer: StampBuffer[Any] = sparse_buffer) -> None:
                store_sparse(buffer, msg, [stream.report for stream in self.streams])

            def on_incompatible(topic: str, message: str) -> None:  # every camera lacks its metric points
                for stream in self.streams:
                    stream.on_incompatible_qos(topic, message)

            sparse_input = (sparse_type, sparse_topic, on_sparse, cfg.sparse_qos, 10, True)
            self._sparse_subs = InputSubscriptions(self, [sparse_input], on_incompatible, QOS_RECHECK_S)
        self.get_logger().info(f"models loaded: {self.models.describe()}"
                               + (f"; cameras: {', '.join(cfg.cameras)}" if cfg.cameras else ""))
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
            self._worker = FrameWorker(self._handle_batch, self._apply_pending_config, self._discard_frame,
                                       self._worker_failed, batch_window_s=self.config.batch_window / 1e3)
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
        self._release()  # stops the worker, after the frame in hand
        return super().on_shutdown(state)

    def _stop_worker(self) -> None:
        worker = self._worker
        if worker is None:
            return
        worker.stop()
        if worker.join(self.worker_join_timeout_s):
            with self._config_lock:
                self._worker = None
        else:  # a frame still in the network (slow CPU): kept; activation refuses a second one, _release waits
            self.get_logger().warning(f"worker still busy after {self.worker_join_timeout_s:g} s; it stops after "
                                      "its current frame")

    def _wait_for_worker(self) -> None:
        """Stop the worker and wait until it has ended: the frame in hand reads the streams and the models (a
        deactivate whose join timed out leaves such a worker behind). A frame is bounded (sync_wait, tf_timeout,
        one forward), and the executor is not needed to finish it."""
        worker = self._worker
        if worker is None:
            return
        worker.stop()
        waited_s = 0.0
        while not worker.join(WORKER_WAIT_LOG_S):
            waited_s += WORKER_WAIT_LOG_S
            self.get_logger().info(f"waiting for the worker to finish its frame before releasing ({waited_s:g} s)")
        with self._config_lock:
            self._worker = None

    def _flush_publishers(self, timeout_s: float = PUBLISH_FLUSH_S) -> None:
        """Wait (bounded) until reliable subscribers acknowledged what was published: the last frame's messages may
        still be queued in the middleware (asynchronous publication), and destroying a publisher drops them."""
        deadline_s = time.monotonic() + timeout_s
        for publisher in list(self.publishers):
            left_s = deadline_s - time.monotonic()
            if left_s <= 0 or publisher.get_subscription_count() == 0:
                continue
            publisher.wait_for_all_acked(Duration(nanoseconds=int(left_s * 1e9)))

    def destroy_node(self) -> None:
        self._wait_for_worker()  # its thread would otherwise outlive the node, and read what is destroyed
        super().destroy_node()

    def _release(self, free_models: bool = True) -> None:
        """Free what configure made. Never under a frame: waits for a worker still in one first. free_models=False
        (the process is ending): drop the models without the garbage collection that frees their memory now."""
        self._wait_for_worker()
        self._flush_publishers()
        if self._sparse_subs is not None:
            self._sparse_subs.destroy()
            self._sparse_subs = None
        for stream in self.streams:
            stream.release()
        if self._tf is not None:
            self._tf.close()
            self._tf = None
        if self.models is not None:
            if free_models:
                self.models.close()  # frees GPU memory
            self.models = None
        self.processor = None

    # -- callbacks: store and return -----------------------------------------------------------------------

    def _on_image(self, index: int, msg: SerializedMessage) -> None:
        """Store only: the bytes as they came (raw subscription), deserialized if the worker takes them."""
        stream = self.streams[index]
        arrival_s = stream.last_image_s = msg.arrival_s
        stream.stats.frame_in(arrival_s)
        worker = self._worker
        if worker is None or worker.stopping:  # configured but not active (lifecycle): counted, not processed
            stream.stats.drop("inactive")
            return
        if worker.put(index, (msg, arrival_s)):
            stream.stats.drop("superseded")  # a newer frame arrived before the worker was free

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        """Validate (once) and hand over; the worker applies the new config between two frames."""
        ours = [p for p in params if p.name in CONFIG_PARAMETERS]  # use_sim_time etc. belong to rclpy
        per_camera = [p for p in params if split_camera_parameter(p.name) is not None]
        try:
            declared = apply_changes(self._declared, ours) if ours else self._declared
            camera_values = [(split_camera_parameter(p.name), camera_parameter_value(p)) for p in per_camera]
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        for split, value in camera_values:  # static extrinsics of one camera: one matrix swap, read once per frame
            assert split is not None
            camera, field_name = split
            self._camera_params.setdefault(camera, {})[field_name] = value
            self._update_camera_statics(camera)
        if not ours:
            return SetParametersResult(successful=True)
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

    def _update_camera_statics(self, camera: str) -> None:
        cfg = self._applied[1]
        for stream in self.streams:
            if stream.camera == camera and stream.extrinsics is not None:
                statics = self._camera_params.get(camera, {})
                stream.extrinsics.update_static(statics.get("static_translation", cfg.static_translation),
                                                statics.get("static_rotation", cfg.static_rotation))

    def _apply_pending_config(self) -> None:
        """Between frames, in the worker (or with no worker, under _config_lock): the newest validated config."""
        pending = self._pending_config.take(timeout_s=0.0)
        if pending is None:
            return
        cfg = pending[1]
        try:
            if self.processor is not None:
                self.processor.reconfigure(cfg)
            for stream in self.streams:
                if stream.extrinsics is not None and stream.camera not in self._camera_params:
                    stream.extrinsics.update_static(cfg.static_translation, cfg.static_rotation)
            if self._worker is not None:
                self._worker.batch_window_s = cfg.batch_window / 1e3
        except Exception as exc:  # the worker must survive it; the values were validated, so this is a bug
            self.streams[0].report.internal_error(exc, f"applying parameter change {pending[0]}")
        self.config = cfg
        self._applied = pending

    def _worker_failed(self, exc: Exception, batch: dict[int, ImageItem]) -> None:
        """An exception escaped the worker's handler (a bug, not the input's fault): logged once with its traceback
        (Reporter.internal_error), counted for each camera of the batch (an internal error, its frame dropped), so
        /diagnostics turns ERROR; the worker goes on with the next frame."""
        indices = [i for i in batch if i < len(self.streams)] or [0]
        cameras = ", ".join(self.streams[i].camera for i in indices if self.streams[i].camera)
        context = "handling a frame" + (f" of {cameras}" if cameras else "") if batch else "between frames"
        self.streams[indices[0]].report.internal_error(exc, context)
        for index in indices[1:]:
            self.streams[index].stats.internal_error(f"internal error while {context}: {exc!r}")
        for index in batch:
            if index < len(self.streams):
                self.streams[index].stats.drop("internal_error")

    def _discard_frame(self, index: int, item: ImageItem) -> None:
        self.streams[index].stats.drop("inactive")  # arrived while the worker was being stopped

    def _handle_batch(self, items: dict[int, ImageItem]) -> None:
        """One step: the newest frame of each camera that has one."""
        generation, cfg = self._applied
        processor = self.processor
        work_start_s = time.monotonic()
        now_ns = self.get_clock().now().nanoseconds
        # 1. Messages -> each camera's frame (decoded, paired with its camera_info and sparse points).
        ready: list[tuple[CameraStream, PreparedFrame]] = []
        for index, item in items.items():
            stream = self.streams[index]
            prepared = stream.prepare(cfg, item, now_ns)
            if prepared is not None:
                ready.append((stream, prepared))
        if not ready or processor is None:
            return
        # 2. The frame path: shared networks, then each camera's finishing, all with this step's config.
        results = processor([prepared.frame for _, prepared in ready], cfg)
        # 3. Each camera's outputs.
        for (stream, prepared), result in zip(ready, results, strict=True):
            if stream.deliver(cfg, prepared, result, work_start_s):
                self.frame_config_generations.append((generation, self._applied[0]))

    # -- reporting -----------------------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        active = self._worker is not None and not self._worker.stopping
        common = {"image_conversion": "cv_bridge" if self.streams[0].inputs.bridge is not None else "numpy",
                  "middleware": self._middleware, "config_generation": str(self._applied[0])}
        model = ""
        if self.models is not None:
            common.update(self.models.describe())
            model = common["depth_model"] or common["normals_model"]
        sparse_conditions = list(self._sparse_subs.incompatible.values()) if self._sparse_subs is not None else []
        statuses = []
        for stream in self.streams:
            extra = {**common, "extrinsics": stream.extrinsics.source if stream.extrinsics else "",
                     **stream.last_alignment}
            if self.processor is not None:
                extra["space"] = self.processor.space(self.config) or ""
            if self.config.cameras:
                extra["batch_size"] = str(stream.last_batch_size)
            hardware_id = " ".join(part for part in (stream.camera_frame or stream.camera or "camera", model) if part)
            conditions = stream.conditions(active, self._active_since_s, self.config.input_timeout)
            statuses.append(build_status(self.get_fully_qualified_name(), stream.stats, extra,
                                         configured=self.models is not None, active=active,
                                         hardware_id=hardware_id, configure_error=self._configure_error,
                                         conditions=sparse_conditions + conditions, camera=stream.camera))
        self._diag_pub.publish(diagnostic_array(self.get_clock().now().to_msg(), statuses))
