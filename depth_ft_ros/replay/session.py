"""The ROS side of a bag replay: the real DepthFtNode in-process, a player node that publishes the bag's input
topics (CDR bytes as recorded) and /clock, and raw subscriptions on every output of the node.

Everything lives in its own rclpy Context (no global state: tests and several replays in one process do not
interfere) and one executor thread; the node's worker thread runs the models as in production.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosgraph_msgs.msg import Clock

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.errors import ConfigError, DepthFtError
from depth_ft_ros.node.isolation import localhost_only_discovery
from depth_ft_ros.node.middleware import prefer_async_publication
from depth_ft_ros.node.node import DepthFtNode

NODE_NAME = "depth_ft_node"
# Node endpoints that are not outputs worth recording.
_NOT_OUTPUTS = ("/rosout", "/parameter_events", "/transition_event")
_RECORD_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
_INPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)  # matches reliable and best-effort subs
_STATIC_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _bag_time(duration: Any) -> QosTime:
    sec, nsec = divmod(int(duration.nanoseconds), 1_000_000_000)
    return QosTime(sec, nsec)


def bag_qos(profile: QoSProfile) -> Qos:
    """An rclpy QoSProfile as rosbag2 stores it (the policy enums share rmw's values)."""
    return Qos(QosHistory(int(profile.history)), profile.depth, QosReliability(int(profile.reliability)),
               QosDurability(int(profile.durability)), _bag_time(profile.deadline), _bag_time(profile.lifespan),
               QosLiveliness(int(profile.liveliness)), _bag_time(profile.liveliness_lease_duration),
               profile.avoid_ros_namespace_conventions)


class ReplayError(DepthFtError):
    """The replay cannot go on (the node did not start, a frame timed out, ...)."""


def private_domain_id() -> int:
    """A ROS domain for one replay process, away from the default 0: other ROS processes on the machine (a
    robot stack, another replay) publishing /camera/image_raw or /diagnostics would otherwise mix into it."""
    pool = [*range(1, 102), *range(215, 233)]  # valid ids on Linux with the default port mapping
    return pool[os.getpid() % len(pool)]


def message_class(msgtype: str) -> Any:
    """The rclpy message class for "pkg/msg/Name"; ReplayError when its package is not installed."""
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        raise ReplayError(f"message type {msgtype} is not installed for rclpy (pip install ros-jazzy-"
                          f"{package.replace('_', '-')} or source a ROS 2 install)") from None


class ReplaySession:
    """start(), then publish() the bag's messages; close() always (also after an error or an interrupt)."""

    def __init__(self, namespace: str, remaps: dict[str, str], parameters: dict[str, Any],
                 params_file: str | None, input_types: dict[str, str], static_topics: set[str],
                 on_output: Callable[[str, str, bytes, float], None], domain_id: int | None = None) -> None:
        self.namespace = "/" + namespace.strip("/")
        self.domain_id = private_domain_id() if domain_id is None else domain_id
        self._private = domain_id is None
        self._remaps = remaps
        self._parameters = parameters
        self._params_file = params_file
        self._input_types = input_types
        self._static_topics = static_topics
        self._on_output = on_output
        self.context = Context()
        self.node: DepthFtNode | None = None
        self._player: Node | None = None
        self._executor: SingleThreadedExecutor | None = None
        self._publishers: dict[str, Any] = {}
        self._recorders: list[Any] = []
        self._clock_pub: Any = None
        self._spin_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.output_topics: dict[str, str] = {}  # full name -> msgtype

    # -- start / stop --------------------------------------------------------------------------------------

    def offered_qos(self, topic: str) -> list[Qos]:
        """The profiles the node's publishers of `topic` offer, in rosbag2's metadata form."""
        if self.node is None:
            return []
        return [bag_qos(pub.qos_profile) for pub in self.node.publishers if pub.topic_name == topic]

    @property
    def config(self) -> NodeConfig:
        """The node's parameters (once started)."""
        if self.node is None:
            raise ReplayError("the replay session has not started its node")
        return self.node.config

    def start(self, discovery_timeout_s: float = 15.0) -> None:
        if self._private:  # nothing outside this machine sees (or feeds) the replay
            localhost_only_discovery()
        prefer_async_publication()  # as depth_ft_node's main does: the replay runs the node as robots do
        # No rclpy signal handlers: they would shut the context down on Ctrl-C mid-replay; the caller handles it.
        try:
            rclpy.init(args=[], context=self.context, domain_id=self.domain_id,
                       signal_handler_options=SignalHandlerOptions.NO)
        except Exception as exc:  # e.g. a domain id the middleware refuses
            raise ReplayError(f"rclpy could not start in ROS domain {self.domain_id} ({exc})") from None
        cli_args = ["--ros-args"]
        for name, target in self._remaps.items():
            cli_args += ["-r", f"{name}:={target}"]
        if self._params_file:
            cli_args += ["--params-file", self._params_file]
        overrides = [Parameter(name, value=value) for name, value in self._parameters.items()]
        try:
            self.node = DepthFtNode(NODE_NAME, namespace=self.namespace, context=self.context, cli_args=cli_args,
                                    parameter_overrides=overrides, use_global_arguments=False)
        except ConfigError as exc:
            raise ReplayError(f"invalid node configuration: {exc} (replay sets parameters with --depth-model, "
                              "--normals-model, --params FILE and --param NAME=VALUE)") from None
        except Exception as exc:  # rcl rejects malformed params files with a bare RuntimeError
            raise ReplayError(f"the node could not start ({type(exc).__name__}: {exc})") from None
        self._player = Node("depth_ft_replay", context=self.context, use_global_arguments=False)
        self._clock_pub = self._player.create_publisher(Clock, "/clock", 10)
        for topic, msgtype in self._input_types.items():
            qos = _STATIC_QOS if topic in self._static_topics else _INPUT_QOS
            self._publishers[topic] = self._player.create_publisher(message_class(msgtype), topic, qos)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._executor.add_node(self._player)
        self._spin_thread = threading.Thread(target=self._spin, name="replay_spin", daemon=True)
        self._spin_thread.start()

        self.node.trigger_configure()
        if self.node.processor is None:
            raise ReplayError("the node failed to configure (the model did not load: see its error above)")
        self.node.trigger_activate()
        self._subscribe_outputs()
        self._wait_matched(discovery_timeout_s)

    def _spin(self) -> None:
        assert self._executor is not None
        while not self._stop.is_set() and self.context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # shutting down under the spin: nothing more to deliver
                if self._stop.is_set() or not self.context.ok():
                    return
                raise

    def _subscribe_outputs(self) -> None:
        """A raw subscription on every topic the node publishes, read from the node itself (not the ROS graph:
        a node of the same name elsewhere in the domain, e.g. on the robot, must not confuse it)."""
        assert self._player is not None and self.node is not None
        for pub in list(self.node.publishers):
            name, msg_class = pub.topic_name, pub.msg_type
            if name.endswith(_NOT_OUTPUTS) or name in self.output_topics:
                continue
            msgtype = f"{msg_class.__module__.split('.')[0]}/msg/{msg_class.__name__}"  # type: ignore[attr-defined]
            self.output_topics[name] = msgtype
            self._recorders.append(self._player.create_subscription(
                msg_class, name, self._recorder(name, msgtype), _RECORD_QOS, raw=True))
        if not self.output_topics:
            raise ReplayError("the node has no outputs after configure")

    def _recorder(self, topic: str, msgtype: str) -> Callable[[bytes], None]:
        return lambda data: self._on_output(topic, msgtype, data, time.monotonic())

    def _wait_matched(self, timeout_s: float) -> None:
        """Wait for discovery both ways, so that no frame is published before the node listens."""
        assert self._player is not None
        deadline = time.monotonic() + timeout_s
        pending: list[str] = []
        while time.monotonic() < deadline:
            pending = [t for t, p in self._publishers.items()
                       if t not in self._static_topics and p.get_subscription_count() == 0]
            # Outputs published before our subscriptions matched would be lost (volatile QoS).
            unmatched = [s.topic_name for s in self._recorders  # count_publishers: Humble has no
                         if self._player.count_publishers(s.topic_name) == 0]  # Subscription.get_publisher_count
            if not pending and not unmatched:
                return
            time.sleep(0.05)
        if pending:
            raise ReplayError(f"the node did not subscribe to {', '.join(pending)} within {timeout_s:.0f} s "
                              "(check the remappings and its image_transport / sparse_input parameters)")
        raise ReplayError(f"the recorder did not match the node's {', '.join(unmatched)} within {timeout_s:.0f} s")

    def close(self) -> None:
        """Stop the node's worker and the executor, shut the context down. Safe after partial starts."""
        self._stop.set()
        node = self.node
        if node is not None:
            try:
                node.trigger_shutdown()  # lifecycle shutdown: stops the worker, frees the models
            except Exception as exc:  # e.g. an invalid transition after a failed start: still tear down
                print(f"replay: node shutdown: {exc!r}", file=sys.stderr)
        if self._spin_thread is not None:
            self._spin_thread.join(timeout=5.0)
        for n in (self._player, node):
            if n is not None:
                if self._executor is not None:
                    self._executor.remove_node(n)
                n.destroy_node()
        if self._executor is not None:
            self._executor.shutdown(timeout_sec=1.0)
            self._executor = None
        # A destroyed LifecycleNode stays in the ROS graph until its reference cycles are collected (rclpy,
        # Jazzy): collect now, or a later replay in this process or domain sees a stale node of this name.
        self.node = self._player = None
        self._publishers.clear()
        self._recorders.clear()
        gc.collect()
        if self.context.ok():
            self.context.shutdown()

    # -- playing -------------------------------------------------------------------------------------------

    def publish(self, topic: str, data: bytes, bag_time_ns: int) -> None:
        """Publish /clock at the bag time, then the message's recorded CDR bytes."""
        sec, nanosec = divmod(int(bag_time_ns), 1_000_000_000)
        clock = Clock()
        clock.clock.sec, clock.clock.nanosec = sec, nanosec
        self._clock_pub.publish(clock)
        self._publishers[topic].publish(bytes(data))

    def plays(self, topic: str) -> bool:
        """Whether `topic` is published to the graph (e.g. /tf_static only where tf2 can use it)."""
        return topic in self._publishers

    def frames_finished(self) -> int:
        """Images the node is done with: published or dropped (every drop is counted, with its reason)."""
        assert self.node is not None
        return self.node.stats.frames_finished()

    def frames_received(self) -> int:
        assert self.node is not None
        return self.node.stats.frames_in

    def node_state(self) -> str:
        """The node's counters and last warning, for messages when a frame never comes out."""
        assert self.node is not None
        snap = self.node.stats.snapshot()
        keys = ("frames_in", "frames_out", "frames_dropped", "last_warning")
        return ", ".join(f"{k}={snap[k]}" for k in keys if k in snap) + "".join(
            f", {k}={v}" for k, v in snap.items() if k.startswith(("dropped.", "bad_input.")))

    def describe_node(self) -> dict[str, str]:
        """Models, device, precision and prediction space of the running pipeline."""
        assert self.node is not None and self.node.models is not None and self.node.processor is not None
        return {**self.node.models.describe(), "space": self.node.processor.space(self.node.config) or ""}
