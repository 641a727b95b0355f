"""The client process of `bench-node --overload`: the cameras, the LiDAR and the consumer of depth/image.

One camera publishes on `image` + `camera_info` and reads `depth/image`; with cameras [a, b, ...] (the node's
`cameras` parameter) each camera C uses `C/image`, `C/camera_info` and `C/depth/image`, all with the same stamp
per frame, and the LiDAR stays one shared `sparse_points`. Outputs are taken as raw bytes (their stamp read with
depth_ft_ros.msgs.serialized): the client's own receive costs no deserialization.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from depth_ft_ros.errors import DepthFtError

T0_NS = 1_700_000_000_000_000_000


def process_cpu_s(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far, from /proc (Linux); NaN elsewhere."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def topic(camera: str, name: str) -> str:
    return f"{camera}/{name}" if camera else name


def client_main(spec: dict[str, Any], results: Any) -> None:
    """Child process entry: run the two phases, put the result (or {"error": ...}) on `results`."""
    try:
        results.put(OverloadClient(spec).run())
    except BaseException as exc:  # reported in the parent, which prints the node's log too
        results.put({"error": f"{type(exc).__name__}: {exc}"})


class OverloadClient:
    """spec: width, height, lidar_lines (0 = none), cameras (list; [""] = one camera with plain names),
    frames, warmup, factor, seconds, diagnostics_period, node_pid, node_name."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.cameras: list[str] = list(spec["cameras"]) or [""]
        self._lock = threading.Lock()
        self.outputs: list[tuple[float, int, str]] = []  # (arrival monotonic s, stamp ns, camera)
        self.diagnostics: dict[str, dict[str, str]] = {}  # status name -> its last values
        self.published: dict[int, float] = {}  # stamp ns -> image publish monotonic s
        self._index = 0

    # -- ROS side --------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from depth_ft_ros.bench.scene import header, scene
        from depth_ft_ros.msgs import convert

        spec = self.spec
        rgb, camera, points = scene(spec["width"], spec["height"], max(spec["lidar_lines"], 1))
        rclpy.init()
        self.node = node = rclpy.create_node("overload_client")
        qos = QoSProfile(depth=5)  # reliable, keep last 5: what camera drivers publish by default
        self.image_pubs = {c: node.create_publisher(Image, topic(c, "image"), qos) for c in self.cameras}
        self.info_pubs = {c: node.create_publisher(CameraInfo, topic(c, "camera_info"), qos) for c in self.cameras}
        self.points_pub = node.create_publisher(PointCloud2, "sparse_points", qos) if spec["lidar_lines"] else None
        self.image = convert.array_to_image(rgb, "rgb8", header(T0_NS))
        self.info = convert.camera_to_camera_info(camera, header(T0_NS))
        self.cloud = None
        if self.points_pub is not None:
            structured = np.zeros(len(points), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
            for i, axis in enumerate("xyz"):
                structured[axis] = points[:, i]
            self.cloud = convert.structured_to_pointcloud2(structured, header(T0_NS), is_dense=True)
        for c in self.cameras:
            node.create_subscription(Image, topic(c, "depth/image"), self._on_depth(c), qos, raw=True)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(node)
        self._stop = threading.Event()
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.02)

    def _close(self) -> None:
        import rclpy

        self._stop.set()
        self._spinner.join(timeout=5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()

    def _on_depth(self, camera: str) -> Any:
        from depth_ft_ros.msgs.serialized import read_stamp_ns

        name = topic(camera, "depth/image")

        def callback(data: bytes) -> None:
            arrival_s = time.monotonic()
            stamp_ns = read_stamp_ns(data, name)
            with self._lock:
                self.outputs.append((arrival_s, stamp_ns, camera))

        return callback

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith(f"/{self.spec['node_name']}"):
                with self._lock:
                    self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def publish(self) -> int:
        """One frame on every camera (and the LiDAR), one stamp; returns it."""
        stamp_ns = T0_NS + self._index * 1_000_000  # distinct, increasing stamps
        self._index += 1
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        for msg in (self.info, self.cloud, self.image):
            if msg is not None:
                msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
        if self.points_pub is not None:
            self.points_pub.publish(self.cloud)
        self.published[stamp_ns] = time.monotonic()
        for c in self.cameras:
            self.info_pubs[c].publish(self.info)
            self.image_pubs[c].publish(self.image)
        return stamp_ns

    def wait_outputs(self, stamp_ns: int, timeout_s: float) -> dict[str, float] | None:
        """Arrival time per camera of the outputs stamped stamp_ns, once every camera has one; None on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                got = {c: t for t, s, c in self.outputs if s == stamp_ns}
            if len(got) == len(self.cameras):
                return got
            time.sleep(0.001)
        return None

    # -- the two phases --------------------------------------------------------------------------------------

    def _wait_for_graph(self) -> None:
        pubs = [*self.image_pubs.values(), *self.info_pubs.values(),
                *([self.points_pub] if self.points_pub is not None else [])]
        deadline = time.monotonic() + 120.0  # the node loads its model first
        while time.monotonic() < deadline and not all(p.get_subscription_count() > 0 for p in pubs):
            time.sleep(0.05)
        missing = [p.topic_name for p in pubs if p.get_subscription_count() == 0]
        if missing:
            raise DepthFtError(f"the node did not subscribe to {', '.join(missing)} within 120 s (see its log)")
        arrived = None
        while arrived is None and time.monotonic() < deadline + 60.0:  # the first output: every camera is up
            arrived = self.wait_outputs(self.publish(), 10.0)
        if arrived is None:
            raise DepthFtError("no depth/image from every camera within 180 s (see the node's log)")

    def run(self) -> dict[str, Any]:
        self._setup()
        try:
            return self._measure()
        finally:
            self._close()

    def _measure(self) -> dict[str, Any]:
        spec, pid = self.spec, self.spec["node_pid"]
        self._wait_for_graph()
        relaxed: list[tuple[int, dict[str, float]]] = []  # (stamp ns, arrival s per camera)
        cpu_relaxed_s = relaxed_start_s = 0.0
        for i in range(spec["warmup"] + spec["frames"]):
            if i == spec["warmup"]:
                cpu_relaxed_s, relaxed_start_s = process_cpu_s(pid), time.monotonic()
            stamp_ns = self.publish()
            arrived = self.wait_outputs(stamp_ns, 30.0)
            if arrived is None:
                raise DepthFtError(f"no depth/image from every camera for relaxed frame {i} within 30 s")
            if i >= spec["warmup"]:
                relaxed.append((stamp_ns, arrived))
        cpu_relaxed_s = process_cpu_s(pid) - cpu_relaxed_s
        last_s = [max(arrived.values()) for _, arrived in relaxed]  # every camera's output of the frame is in
        relaxed_seconds = last_s[-1] - relaxed_start_s
        relaxed_interval_s = float(np.median(np.diff(last_s)))
        period_s = relaxed_interval_s / spec["factor"]
        time.sleep(1.5 * spec["diagnostics_period"])
        with self._lock:
            before = {name: dict(values) for name, values in self.diagnostics.items()}
            first_output = len(self.outputs)
        cpu_flood_s = process_cpu_s(pid)
        start_s = time.monotonic()
        sent = 0
        while time.monotonic() - start_s < spec["seconds"]:
            self.publish()
            sent += 1
            time.sleep(max(0.0, start_s + sent * period_s - time.monotonic()))
        end_s = time.monotonic()
        cpu_flood_s = process_cpu_s(pid) - cpu_flood_s
        time.sleep(max(2.0 * relaxed_interval_s, 0.5) + 1.5 * spec["diagnostics_period"])  # last frame, counters
        with self._lock:
            flood = [o for o in self.outputs[first_output:] if o[0] <= end_s + 1e-3]
            after = {name: dict(values) for name, values in self.diagnostics.items()}
        per_camera = {}
        for c in self.cameras:
            mine = [(t, s) for t, s, cam in flood if cam == c]
            per_camera[c] = {
                "relaxed_intervals_s": list(np.diff([arrived[c] for _, arrived in relaxed])),
                "relaxed_latency_s": [arrived[c] - self.published[s] for s, arrived in relaxed],
                "flood_intervals_s": list(np.diff([t for t, _ in mine])),
                "flood_latency_s": [t - self.published[s] for t, s in mine],
                "flood_outputs": len(mine)}
        return {"cameras": per_camera, "flood_seconds": end_s - start_s, "flood_sent": sent,
                "relaxed_frames": len(relaxed), "input_period_s": period_s, "diagnostics_before": before,
                "diagnostics_after": after, "node_cpu_relaxed_s": cpu_relaxed_s, "relaxed_seconds": relaxed_seconds,
                "node_cpu_flood_s": cpu_flood_s}
