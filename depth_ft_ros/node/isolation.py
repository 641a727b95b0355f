"""Keep DDS discovery on this machine (tests, bag replays): the variable differs between ROS distributions."""

from __future__ import annotations

import os

_PRE_IRON = ("foxy", "galactic", "humble")


def localhost_only_discovery() -> None:
    """Set localhost-only discovery in os.environ, before rclpy is initialised.

    Humble and older read ROS_LOCALHOST_ONLY; Iron+ read ROS_AUTOMATIC_DISCOVERY_RANGE, where a set
    ROS_LOCALHOST_ONLY is deprecated and overrides the range, so it is dropped there (with any static peers).
    The pip wheels set no ROS_DISTRO: they are Jazzy.
    """
    if os.environ.get("ROS_DISTRO", "").lower() in _PRE_IRON:
        os.environ["ROS_LOCALHOST_ONLY"] = "1"
    else:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        os.environ.pop("ROS_LOCALHOST_ONLY", None)
        os.environ.pop("ROS_STATIC_PEERS", None)
