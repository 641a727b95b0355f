"""The node benchmarks' harness: the real depth_ft_node in-process over rclpy, configured and active, with a probe
node beside it in the same context, an executor spinning both, and everything torn down afterwards; and the
subscribers of its outputs in another process."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from depth_ft_ros.errors import DepthFtError

# The node's stages outside the network forward, as its per-frame timings name them (waits for pairing excluded).
OUTSIDE_NETWORK = ("convert_image", "convert_points", "sparse", "align", "confidence", "rectify", "cloud", "publish")


@contextlib.contextmanager
def running_node(params: dict[str, Any], probe_name: str) -> Iterator[tuple[Any, Any]]:
    """(DepthFtNode, probe rclpy Node) while the node runs with `params`; DepthFtError when it fails to configure.
    Set the environment the DDS participant reads (e.g. the publication mode) before entering."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from depth_ft_ros.node.node import DepthFtNode

    context = Context()
    rclpy.init(context=context)
    node = DepthFtNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    probe = Node(probe_name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(probe)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        node.trigger_configure()
        if node.models is None:
            raise DepthFtError("the node failed to configure (see its error above)")
        node.trigger_activate()
        yield node, probe
    finally:
        stop.set()
        spinner.join(timeout=5.0)
        if node.models is not None:
            node.trigger_deactivate()  # stops the worker
            node.trigger_cleanup()  # frees the models
        executor.shutdown()
        node.destroy_node()
        probe.destroy_node()
        context.try_shutdown()


def subscribe_outputs(topics: list[tuple[str, str]], counted: list[str], received: Any, stop: Any) -> None:
    """Child process (the outputs' users, as RViz and planners on a robot): subscribe to each (topic,
    sensor_msgs type name) as raw bytes (no deserialisation cost) and count the messages on `counted` topics."""
    import rclpy
    import sensor_msgs.msg

    rclpy.init()
    node = rclpy.create_node("bench_subscriber")

    def count(_: bytes) -> None:
        with received.get_lock():
            received.value += 1

    for topic, type_name in topics:
        node.create_subscription(getattr(sensor_msgs.msg, type_name), topic,
                                 count if topic in counted else (lambda _: None), 10, raw=True)
    while not stop.is_set():
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.try_shutdown()
