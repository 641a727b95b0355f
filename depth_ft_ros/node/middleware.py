"""Middleware settings that must be in the environment before rclpy.init: the rmw reads them when it creates
the process's DDS participant, so they cannot be ROS parameters.

Publication mode (Fast DDS, the default rmw): SYNCHRONOUS, the rmw's default since Humble, sends each sample to
every reader inside publish(); ASYNCHRONOUS hands it to Fast DDS's own sender thread, which needs no GIL. For
this node's multi-megabyte outputs that moves the transport (measured: ~1.3 ms per frame for a 640x480 depth
image + xyz/rgb cloud to another process, BENCHMARKS.md "Node") off the worker, which goes back to the next
frame; on a robot the CPU is idle while the GPU runs the network, so the sending overlaps it. Other rmw
implementations ignore the variable.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

PUBLICATION_MODE_VAR = "RMW_FASTRTPS_PUBLICATION_MODE"
NODE_PUBLICATION_MODE = "ASYNCHRONOUS"
PUBLICATION_MODES = ("ASYNCHRONOUS", "SYNCHRONOUS", "AUTO")


def prefer_async_publication(environ: MutableMapping[str, str] = os.environ) -> str:
    """Set Fast DDS's asynchronous publication unless the user chose a mode; returns the mode in effect."""
    return environ.setdefault(PUBLICATION_MODE_VAR, NODE_PUBLICATION_MODE)


def describe_middleware(environ: MutableMapping[str, str] = os.environ) -> str:
    """'<rmw implementation>, publication <mode>' for the node's diagnostics."""
    try:
        from rclpy import get_rmw_implementation_identifier

        rmw = get_rmw_implementation_identifier()
    except ImportError:
        rmw = environ.get("RMW_IMPLEMENTATION", "unknown rmw")
    if "fastrtps" not in rmw and "fastdds" not in rmw:
        return rmw
    return f"{rmw}, publication {environ.get(PUBLICATION_MODE_VAR, 'SYNCHRONOUS (rmw default)')}"
