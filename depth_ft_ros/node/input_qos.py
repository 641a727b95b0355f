"""Input subscriptions whose reliability matches the publishers present (`*_qos: auto`), or is forced.

A RELIABLE subscription receives nothing from a BEST_EFFORT publisher ("incompatible QoS"): many LiDAR drivers
and some cameras publish SensorDataQoS. A BEST_EFFORT subscription receives from both, but between processes it
loses most large images (README, "QoS"). So `auto` subscribes RELIABLE while every publisher on the topic is
reliable (or none is there yet) and BEST_EFFORT as soon as one is not; `refresh()` re-checks the graph and
re-subscribes when that changes. Incompatible-QoS events are reported with the topic and both profiles.

raw=True subscribes to the serialized bytes (rclpy's create_subscription(..., raw=True), the same keyword on
Humble and Jazzy): the callback gets a SerializedMessage (bytes, arrival time, stamp read from the bytes,
deserialized on demand), so an input flood costs the executor a store per message, not a deserialization.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from depth_ft_ros.msgs.serialized import SerializedMessage

try:  # Iron and later
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks  # type: ignore[no-redef,unused-ignore]

QOS_SETTINGS = ("auto", "reliable", "best_effort")
# (message type, topic, callback, QoS setting, reliable queue depth) or the same with raw (bool) last
InputSpec = tuple[Any, ...]


def choose_reliability(setting: str, offered: list[ReliabilityPolicy]) -> ReliabilityPolicy:
    """The reliability to request given the setting and what the topic's publishers offer."""
    if setting == "reliable":
        return ReliabilityPolicy.RELIABLE
    if setting == "best_effort":
        return ReliabilityPolicy.BEST_EFFORT
    return ReliabilityPolicy.BEST_EFFORT if ReliabilityPolicy.BEST_EFFORT in offered else ReliabilityPolicy.RELIABLE


def describe_profile(profile: QoSProfile) -> str:
    return f"{profile.reliability.name.lower()}, {profile.durability.name.lower()}, depth {profile.depth}"


class AdaptiveSubscription:
    """One input subscription; its reliability follows `setting` and the publishers on the topic.

    reliable_depth: the reader's queue when reliable (the node's store-only callbacks drain it at once); best
    effort uses the sensor-data profile (keep last 5).
    raw: subscribe to the serialized bytes; `callback` then receives a SerializedMessage."""

    def __init__(self, node: Node, msg_type: Any, topic: str, callback: Callable[[Any], None], setting: str,
                 reliable_depth: int, on_incompatible: Callable[[str, str], None], raw: bool = False) -> None:
        self._node = node
        self._msg_type = msg_type
        self._topic = topic
        self._callback = callback
        self.raw = raw
        self.setting = setting
        self._reliable_depth = reliable_depth
        self._on_incompatible = on_incompatible
        self._subscription: Any = None
        self._resolved_topic = topic
        self.profile: QoSProfile | None = None
        self.refresh()

    @property
    def topic_name(self) -> str:
        """The resolved (namespaced, remapped) topic name."""
        return str(self._subscription.topic_name) if self._subscription is not None else self._topic

    def offered(self) -> list[QoSProfile]:
        """The QoS profiles of the topic's publishers, from the ROS graph."""
        name = self.topic_name
        if self._subscription is None and hasattr(self._node, "resolve_topic_name"):
            name = self._node.resolve_topic_name(self._topic)
        return [info.qos_profile for info in self._node.get_publishers_info_by_topic(name)]

    def _profile(self, reliability: ReliabilityPolicy) -> QoSProfile:
        if reliability == ReliabilityPolicy.BEST_EFFORT:
            return qos_profile_sensor_data
        return QoSProfile(depth=self._reliable_depth, reliability=ReliabilityPolicy.RELIABLE)

    def refresh(self) -> bool:
        """Subscribe, or re-subscribe when the reliability to request changed; True when it did."""
        reliability = choose_reliability(self.setting, [p.reliability for p in self.offered()])
        if self.profile is not None and self.profile.reliability == reliability:
            return False
        self.destroy()
        self.profile = self._profile(reliability)
        events = SubscriptionEventCallbacks(incompatible_qos=self._incompatible)
        callback = self._on_raw if self.raw else self._callback
        self._subscription = self._node.create_subscription(self._msg_type, self._topic, callback,
                                                            self.profile, event_callbacks=events, raw=self.raw)
        self._resolved_topic = str(self._subscription.topic_name)  # once, not per raw message
        return True

    def _on_raw(self, data: bytes) -> None:
        """Store-only: wrap the bytes (no parsing here; the stamp is read when first asked for)."""
        self._callback(SerializedMessage(data, self._msg_type, self._resolved_topic, time.monotonic()))

    def _incompatible(self, event: Any) -> None:
        assert self.profile is not None
        offered = "; ".join(describe_profile(p) for p in self.offered()) or "no publisher seen"
        kind = getattr(event, "last_policy_kind", None)
        policy = getattr(kind, "name", str(kind))
        self._on_incompatible(self.topic_name, f"{self.topic_name}: incompatible QoS ({policy}): this node requests "
                              f"{describe_profile(self.profile)} (parameter setting {self.setting!r}); the "
                              f"publishers offer {offered}")

    def destroy(self) -> None:
        if self._subscription is not None:
            self._node.destroy_subscription(self._subscription)
            self._subscription = None


class InputSubscriptions:
    """The node's input subscriptions: re-checked against the publishers every recheck_s, and the topics whose
    QoS is incompatible now (until a re-subscription resolves it), for /diagnostics."""

    def __init__(self, node: Node, inputs: Sequence[InputSpec], on_incompatible: Callable[[str, str], None],
                 recheck_s: float = 1.0) -> None:
        """inputs: (message type, topic, callback, QoS setting, reliable queue depth[, raw]) each; raw (default
        False) subscribes to the serialized bytes (the callback gets a SerializedMessage)."""
        self._node = node
        self._on_incompatible = on_incompatible
        self.incompatible: dict[str, str] = {}  # resolved topic -> what is incompatible
        self.subscriptions = [self._subscribe(spec) for spec in inputs]
        self._timer = node.create_timer(recheck_s, self.refresh)

    def _subscribe(self, spec: InputSpec) -> AdaptiveSubscription:
        msg_type, topic, callback, setting, depth = spec[:5]
        raw = bool(spec[5]) if len(spec) > 5 else False
        return AdaptiveSubscription(self._node, msg_type, topic, callback, setting, depth, self._incompatible, raw=raw)

    def _incompatible(self, topic: str, message: str) -> None:
        self.incompatible[topic] = message
        self._on_incompatible(topic, message)

    def refresh(self) -> None:
        """Follow the publishers (auto): re-subscribe when one appears with another reliability."""
        for sub in self.subscriptions:
            if sub.refresh():
                assert sub.profile is not None
                self.incompatible.pop(sub.topic_name, None)
                self._node.get_logger().info(f"{sub.topic_name}: publishers changed, now subscribed "
                                             f"{describe_profile(sub.profile)}")

    def destroy(self) -> None:
        self._node.destroy_timer(self._timer)
        for sub in self.subscriptions:
            sub.destroy()
        self.subscriptions.clear()
        self.incompatible.clear()
