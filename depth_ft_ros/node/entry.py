"""The `depth_ft_node` process (console script, `ros2 run`, or `python -m depth_ft_ros.node.entry`): SIGINT /
SIGTERM handled from the first moment (node/signals.py), then the node's imports (seconds: torch, diffusers,
rclpy), then DepthFtNode (node/node.py) spun until a signal."""

from __future__ import annotations

import re
import sys

from depth_ft_ros.node.signals import SPIN_POLL_S, StopSignals, exit_now


def run_node() -> None:
    main(stop=StopSignals().install())


def rcl_error_message(exc: BaseException) -> str:
    """rcl's argument error as one line: without the 'failed to initialize rcl' prefix and the C source
    locations (", at /project/src/rcl/arguments.c:352")."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    text = re.sub(r"^failed to initialize rcl: ", "", text)
    return re.sub(r"(, at [^,]+:\d+)+$", "", text)


def main(args: list[str] | None = None, *, exit_process: bool = True, stop: StopSignals | None = None) -> int:
    """Run the node until SIGINT / SIGTERM (node/signals.py): an idle node exits 0 at once, a busy one after the
    frame in hand. exit_process: end the process here once everything is released (signals.exit_now), instead of
    returning the exit code. stop: handlers installed earlier (signals.run_node)."""
    from depth_ft_ros.node.middleware import prefer_async_publication

    prefer_async_publication()  # before rclpy.init: read when the DDS participant is created
    stop = stop or StopSignals().install()
    if stop.requested.is_set():  # a signal while importing: nothing started, nothing to release
        stop.restore()
        if exit_process:
            exit_now(0)
        return 0
    code = _run(args, stop)
    stop.restore()
    if exit_process:
        exit_now(code)
    return code


def _run(args: list[str] | None, stop: StopSignals) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from depth_ft_ros.errors import ConfigError
    from depth_ft_ros.node.node import DepthFtNode

    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)  # signals are handled here
    except RuntimeError as exc:  # rclpy's RCLError: malformed --ros-args (e.g. `-p name:=`)
        print(f"depth_ft_node: invalid ROS arguments: {rcl_error_message(exc)}", file=sys.stderr)
        return 2
    try:
        node = DepthFtNode()
    except ConfigError as exc:
        print(f"depth_ft_node: invalid configuration: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:  # a signal while starting
        rclpy.try_shutdown()
        return 0
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        if node.config.autostart and not stop.requested.is_set():
            stop.interruptible = True
            node.trigger_configure()  # loads the models: may take long; a signal interrupts it
            stop.interruptible = False
            if node.models is None and not stop.requested.is_set():
                code = 1
            elif node.models is not None:
                node.trigger_activate()
        stop.spinning = True
        while code == 0 and not stop.requested.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        stop.releasing = True
        node.get_logger().info(f"stopping ({', '.join(stop.received)})" if stop.received else "stopping")
        node._release(free_models=False)  # after the frame in hand: the worker still publishes it
        published = sum(stream.stats.frames_out for stream in node.streams)
        dropped = sum(sum(stream.stats.dropped.values()) for stream in node.streams)
        node.get_logger().info(f"stopped: {published} frames published, {dropped} dropped")
        node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    run_node()
