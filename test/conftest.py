"""Shared pytest setup, above all for tests that run real rclpy graphs (FastDDS from the ROS 2 wheels).

- ROS isolation, applied in pytest_configure before anything can initialise rclpy: every test process gets its
  own ROS_DOMAIN_ID (from its pid; override with DEPTH_FT_TEST_ROS_DOMAIN_ID) and localhost-only discovery,
  so parallel runs (xdist workers, two engineers, CI jobs) and robots on the LAN never see each other.
  Publication mode: the one depth_ft_node's main() and the replay choose (node/middleware.py), set for the whole
  session so the mode does not depend on which test happened to run a replay first.
- `ros` mark: tests marked `ros`, or using the rclpy fixtures below, are skipped with a reason when rclpy
  cannot be imported; `-m "not ros"` deselects them.
- Fixtures: `rclpy_context` (a fresh rclpy Context per test, shut down after it), `ros_graph` (a RosGraph: nodes
  in that context, an executor spinning in a background thread, `collect` and `wait_for` helpers) and
  `wait_for` (the polling helper alone).

Example:
    def test_echo(ros_graph):
        node = ros_graph.node("probe")
        pub = node.create_publisher(Image, "in", 10)
        received = ros_graph.collect(node, Image, "in")
        assert ros_graph.wait_for(lambda: pub.get_subscription_count() > 0, 5.0)
        pub.publish(msg)
        assert ros_graph.wait_for(lambda: received, 5.0)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from depth_ft_ros.node.isolation import localhost_only_discovery
from depth_ft_ros.node.middleware import prefer_async_publication

# Valid ROS 2 domain ids on Linux with the default port mapping: 0..101 and 215..232. 0 is everyone's default.
_DOMAIN_POOL = [*range(1, 102), *range(215, 233)]
_RCLPY_FIXTURES = {"rclpy_context", "ros_graph"}


def isolate_ros_environment() -> int:
    """Set ROS_DOMAIN_ID and localhost-only discovery in os.environ; returns the domain id."""
    override = os.environ.get("DEPTH_FT_TEST_ROS_DOMAIN_ID")
    domain = int(override) if override else _DOMAIN_POOL[os.getpid() % len(_DOMAIN_POOL)]
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    localhost_only_discovery()
    prefer_async_publication()
    return domain


def rclpy_skip_reason() -> str | None:
    """None when rclpy imports, else why the ROS tests are skipped."""
    try:
        import rclpy  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install (missing rmw library)
        return f"rclpy not importable ({exc}): pip install -r requirements-ros.txt or source a ROS 2 install"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config._depth_ft_ros_domain = isolate_ros_environment()  # type: ignore[attr-defined]


def pytest_report_header(config: pytest.Config) -> str:
    return f"ROS isolation: ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID')}, localhost-only discovery"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason: str | None = None
    checked = False
    for item in items:
        if _RCLPY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ros)
        if item.get_closest_marker("ros") is None:
            continue
        if not checked:
            reason, checked = rclpy_skip_reason(), True
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def wait_for_condition(
    predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.01, check: Callable[[], None] | None = None
) -> bool:
    """Poll `predicate` until truthy or `timeout_s` passes; True when it became truthy. `check` may raise."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check is not None:
            check()
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


class RosGraph:
    """Nodes in one rclpy Context, spun by a SingleThreadedExecutor in a background thread.

    Only rclpy APIs present in Humble and Jazzy are used. Callback exceptions stop the spin thread and are
    re-raised by wait_for / close, so a failing callback fails the test instead of timing out silently.
    """

    def __init__(self, context: Any) -> None:
        from rclpy.executors import SingleThreadedExecutor

        self.context = context
        self.executor = SingleThreadedExecutor(context=context)
        self._nodes: list[Any] = []
        self._errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="ros_graph_spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            while not self._stop.is_set() and self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except BaseException as exc:  # surfaced in the test thread by raise_errors
            if not self._stop.is_set():
                self._errors.append(exc)

    def node(self, name: str, **kwargs: Any) -> Any:
        """A new rclpy Node in this graph's context, added to the executor."""
        from rclpy.node import Node

        return self.add_node(Node(name, context=self.context, **kwargs))

    def add_node(self, node: Any) -> Any:
        """Spin a node built elsewhere (it must use this graph's context); destroyed by close()."""
        self._nodes.append(node)
        self.executor.add_node(node)
        return node

    def collect(self, node: Any, msg_type: Any, topic: str, qos: Any = 10) -> list[Any]:
        """Subscribe `node` to `topic`; the returned list fills with received messages, in order."""
        received: list[Any] = []
        node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def raise_errors(self) -> None:
        if self._errors:
            raise RuntimeError("a callback raised in the spin thread") from self._errors[0]

    def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 5.0) -> bool:
        """Poll `predicate` while the executor spins; True once truthy, False after `timeout_s`."""
        return wait_for_condition(predicate, timeout_s, check=self.raise_errors)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        for node in self._nodes:
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()
        self.raise_errors()


@pytest.fixture
def rclpy_context() -> Iterator[Any]:
    """A fresh, initialised rclpy Context for one test (never the global default context)."""
    reason = rclpy_skip_reason()
    if reason:
        pytest.skip(reason)
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        if context.ok():
            context.shutdown()


@pytest.fixture
def ros_graph(rclpy_context: Any) -> Iterator[RosGraph]:
    """A RosGraph in the test's own context; nodes destroyed and the spin thread joined afterwards."""
    graph = RosGraph(rclpy_context)
    try:
        yield graph
    finally:
        graph.close()


@pytest.fixture
def wait_for() -> Callable[..., bool]:
    """wait_for(predicate, timeout_s, interval_s=0.01) -> bool: poll until truthy or timed out."""
    return wait_for_condition
