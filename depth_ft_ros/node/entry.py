"""The `depth_ft_node` console script: SIGINT / SIGTERM handled from the first moment (node/signals.py), then the
node's imports (seconds: torch, diffusers, rclpy) and its main()."""

from __future__ import annotations

from depth_ft_ros.node.signals import StopSignals


def run_node() -> None:
    stop = StopSignals().install()
    from depth_ft_ros.node.node import main

    main(stop=stop)
