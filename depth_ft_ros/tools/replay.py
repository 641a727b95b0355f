"""`depth-ft-ros replay IN_BAG --out OUT_BAG`: a rosbag2 through the real node, its outputs recorded to MCAP.

The bag's camera image, camera_info and sparse points are published to an in-process DepthFtNode (use_sim_time,
with /clock from the bag); every topic the node publishes is recorded, together with the played inputs, into
an MCAP rosbag2 for `ros2 bag`, Foxglove or rosbags. The summary gives frames in/out/dropped, latency, the
metric scale/shift over time and, when the bag has ground-truth depth, AbsRel/RMSE/delta1.

Parameters, lowest precedence first: the node's defaults, --params FILE, then the bag's LiDAR extrinsics (from
/tf_static, when tf2 is not importable), --depth-model/--normals-model and --param NAME=VALUE.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from depth_ft_ros.bag import messages as m
from depth_ft_ros.bag.playback import Pacer, Progress, lead_topics
from depth_ft_ros.bag.report import FrameRecord, ReplaySummary
from depth_ft_ros.bag.rosbag_io import BagError, BagReader, BagWriter
from depth_ft_ros.bag.topics import NONE, TopicPlan, choose_topics
from depth_ft_ros.bag.transforms import lookup_static
from depth_ft_ros.core.config import NodeConfig, param_spec
from depth_ft_ros.core.errors import ConfigError, DepthFtError, InputError
from depth_ft_ros.core.pose import matrix_to_pose

if TYPE_CHECKING:  # rclpy and torch load only once the bag and the flags are known to be good
    from depth_ft_ros.ros.replay_analysis import OutputAnalyzer
    from depth_ft_ros.ros.replay_session import ReplaySession

GRACE_S = 0.5  # after the node finished a frame, how long its outputs may still be in flight
STOP_DRAIN_S = 10.0  # after Ctrl-C, how long frames already sent may take to come out


def _domain_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 232:  # DDS port mapping: larger ids have no ports
        raise argparse.ArgumentTypeError(f"ROS domain ids are 0..232 (got {text!r})")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("in_bag", metavar="IN_BAG", help="rosbag2 directory (MCAP or sqlite3)")
    parser.add_argument("--out", required=True, metavar="OUT_BAG", help="output MCAP bag directory (must not exist)")
    parser.add_argument("--params", metavar="FILE", help="node parameters YAML (e.g. config/depth_ft.yaml)")
    parser.add_argument("--depth-model", metavar="M", help="depth checkpoint: local folder or Hugging Face id")
    parser.add_argument("--normals-model", metavar="M", help="normals checkpoint: local folder or Hugging Face id")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="any node parameter, value in YAML (e.g. processing_resolution=256); repeatable")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--lossless", action="store_true",
                      help="send each frame only after the node's outputs for the previous one (tests, accuracy)")
    pace.add_argument("--rate", type=float, default=1.0, metavar="R",
                      help="play in R x real time like `ros2 bag play --rate` (default 1.0)")
    parser.add_argument("--image-topic", metavar="T", help="camera image (Image or CompressedImage)")
    parser.add_argument("--camera-info-topic", metavar="T", help="CameraInfo of the image")
    parser.add_argument("--sparse-points-topic", metavar="T", help=f"metric points (PointCloud2), or {NONE}")
    parser.add_argument("--gt-depth-topic", metavar="T", help=f"ground-truth depth (Image 32FC1/16UC1), or {NONE}")
    parser.add_argument("--preview", metavar="DIR", help="write preview PNGs and a scale/shift plot here")
    parser.add_argument("--summary-json", metavar="FILE", help="also write the summary as JSON")
    parser.add_argument("--namespace", default="depth_ft", help="namespace of the node's outputs (depth_ft)")
    parser.add_argument("--domain-id", type=_domain_id, metavar="N",
                        help="ROS domain of the replay (default: a private one, localhost only, so no other ROS "
                             "traffic mixes in); --domain-id $ROS_DOMAIN_ID to watch it live in RViz")
    parser.add_argument("--frame-timeout", type=float, default=300.0, metavar="S",
                        help="lossless: give up when a frame has no output after S seconds (default 300)")


def _parse_params(items: list[str]) -> dict[str, Any]:
    """--param NAME=VALUE items, checked against the node's parameter table (rclpy would silently ignore an
    override of a misspelt name) and with whole numbers given to float parameters made floats."""
    defaults = {f.name: getattr(NodeConfig(), f.name) for f in fields(NodeConfig)}
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE, e.g. processing_resolution=256")
        param_spec(name)  # ConfigError listing the known parameters
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--param {item!r}: the value is not valid YAML ({exc.__class__.__name__})") from None
        default = defaults[name]
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif isinstance(default, list) and isinstance(value, list):
            try:
                value = [float(v) for v in value]
            except (TypeError, ValueError):
                raise ConfigError(f"--param {item!r}: expected a list of numbers") from None
        out[name] = value
    return out


def _static_extrinsics(bag: BagReader, plan: TopicPlan) -> tuple[list[float], list[float]] | None:
    """static_translation / static_rotation (sparse-points frame -> camera frame) from /tf_static, if any."""
    if plan.sparse_points is None or plan.tf_static is None:
        return None
    image, cloud = bag.first(plan.image), bag.first(plan.sparse_points)
    camera_frame, cloud_frame = image.header.frame_id, cloud.header.frame_id
    if not cloud_frame or cloud_frame == camera_frame:
        return None
    edges = [e for _t, msgtype, _n, data in bag.messages([plan.tf_static])
             for e in m.parse_tf_message(m.deserialize(data, msgtype))]
    try:
        return matrix_to_pose(lookup_static(edges, camera_frame, cloud_frame))
    except InputError as exc:
        print(f"replay: warning: {exc}; the node uses static_translation/static_rotation from its parameters "
              "(--params / --param)", file=sys.stderr)
        return None


def _node_parameters(args: argparse.Namespace, plan: TopicPlan,
                     extrinsics: tuple[list[float], list[float]] | None, use_tf2: bool) -> dict[str, Any]:
    params: dict[str, Any] = {"use_sim_time": True, "autostart": False,
                              "image_transport": "compressed" if plan.image_compressed else "raw"}
    if plan.sparse_points is None:
        params["sparse_input"] = "none"
    if extrinsics is not None and not use_tf2:
        params["static_translation"], params["static_rotation"] = extrinsics
    if args.depth_model is not None:
        params["depth_model"] = args.depth_model
    if args.normals_model is not None:
        params["normals_model"] = args.normals_model
    params.update(_parse_params(args.param))
    return params


def _expected_outputs(session: ReplaySession, has_sparse: bool) -> set[str]:
    """The outputs (names relative to the node's namespace) every frame should produce when all goes well: the
    fast path of _wait_frame; the node's counters decide for frames that end otherwise."""
    cfg = session.node.config
    rel: set[str] = set()
    if cfg.depth_model:
        rel.add("depth/colorized")
        if cfg.publish_relative:
            rel.add("depth/relative")
        if has_sparse and cfg.alignment != "off":
            rel |= {"depth", "depth/camera_info", "points"}
    if cfg.normals_model:
        rel |= {"normals", "normals/colorized"}
    return {r for r in rel if f"{session.namespace}/{r}" in session.output_topics}


def _wait_frame(session: ReplaySession, record: FrameRecord, finished_before: int, expected: set[str],
                timeout_s: float, stop: threading.Event) -> None:
    deadline_s = time.monotonic() + timeout_s
    grace_until_s: float | None = None
    while not expected <= set(record.arrivals_s) and not stop.is_set():
        now_s = time.monotonic()
        if grace_until_s is None and session.frames_finished() > finished_before:
            grace_until_s = now_s + GRACE_S  # done (or dropped): whatever it published is in flight
        if grace_until_s is not None and now_s >= grace_until_s:
            return
        if now_s >= deadline_s:
            raise DepthFtError(f"frame {record.index} (stamp {record.stamp_ns / 1e9:.3f} s) has no output after "
                               f"{timeout_s:.0f} s; node: {session.node_state()}. A slow model on CPU may need "
                               "a larger --frame-timeout")
        stop.wait(0.005)


def _drain(session: ReplaySession, sent: int, timeout_s: float, stop: threading.Event) -> None:
    """Rate mode: wait until the node received and finished every frame sent (or gave up on it)."""
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s and not stop.is_set():
        if session.frames_received() >= sent and session.frames_finished() >= session.frames_received():
            stop.wait(GRACE_S)
            return
        stop.wait(0.01)


def _play(bag: BagReader, plan: TopicPlan, session: ReplaySession, analyzer: OutputAnalyzer, writer: BagWriter,
          frames: list[FrameRecord], args: argparse.Namespace, clock: dict[str, int], stop: threading.Event) -> None:
    """Play the bag until its end or until `stop` (Ctrl-C) is set; only ever stops between two messages."""
    by_stamp = {f.stamp_ns: f for f in frames}
    expected = _expected_outputs(session, plan.sparse_points is not None)
    early = {plan.gt_depth} if plan.gt_depth else set()
    lead_ns = 0
    if args.lossless:
        early |= {plan.camera_info, plan.sparse_points} - {None}
    if early:
        lead_ns = int((session.node.config.sync_tolerance + 0.05) * 1e9)
    pacer = None if args.lossless else Pacer(args.rate, stop)
    progress = Progress(len(frames))
    progress.update(0)
    sent = 0
    topics = plan.inputs() + ([plan.gt_depth] if plan.gt_depth else [])
    for topic, msgtype, log_ns, data in lead_topics(bag.messages(topics), early, lead_ns):
        if stop.is_set():
            break
        writer.write(topic, msgtype, log_ns, data, transient_local=topic == plan.tf_static)
        if topic == plan.gt_depth:
            analyzer.add_ground_truth(data)
            continue
        if not session.plays(topic):
            continue  # no tf2 here: the node got these transforms as static parameters
        if pacer is not None:
            pacer.wait(log_ns)
        clock["ns"] = max(clock["ns"], log_ns)  # side messages sent ahead must not turn /clock back
        record = by_stamp.get(m.stamp_ns_from_cdr(data)) if topic == plan.image else None
        finished_before = session.frames_finished()
        session.publish(topic, data, clock["ns"])
        if record is None:
            continue
        record.sent_s = time.monotonic()
        analyzer.image_sent(record, data, msgtype)
        sent += 1
        if args.lossless:
            _wait_frame(session, record, finished_before, expected, args.frame_timeout, stop)
        progress.update(sent)
    if stop.is_set():  # Ctrl-C: still record the frames the node is working on (Ctrl-C again aborts)
        _drain(session, sent, min(args.frame_timeout, STOP_DRAIN_S), threading.Event())
    elif not args.lossless:
        _drain(session, sent, args.frame_timeout, stop)
    progress.close()


@dataclass
class _Setup:
    """Everything decided from the flags and the bag before ROS starts."""

    plan: TopicPlan
    frames: list[FrameRecord]
    params: dict[str, Any]
    remaps: dict[str, str]
    inputs: dict[str, str]  # topic -> msgtype published to the node
    static_topics: set[str]  # published TRANSIENT_LOCAL (/tf_static, only where tf2 can use it)


def _setup(args: argparse.Namespace, bag: BagReader) -> _Setup:
    plan = choose_topics(bag, args.image_topic, args.camera_info_topic, args.sparse_points_topic,
                         args.gt_depth_topic)
    frames = [FrameRecord(i, m.stamp_ns_from_cdr(data))
              for i, (_t, _mt, _n, data) in enumerate(bag.messages([plan.image]))]
    if not frames:
        raise BagError(f"{bag.path}: the image topic {plan.image} has no messages")
    extrinsics = _static_extrinsics(bag, plan)
    # tf2 needs both tf2_ros (the node's listener) and tf2_msgs (to publish /tf_static here).
    use_tf2 = plan.tf_static is not None and all(importlib.util.find_spec(p) for p in ("tf2_ros", "tf2_msgs"))
    remaps = {"image/compressed" if plan.image_compressed else "image": plan.image,
              "camera_info": plan.camera_info}
    if plan.sparse_points:
        remaps["sparse_points"] = plan.sparse_points
    print(f"replay: {bag.path} ({len(frames)} frames): image {plan.image}, camera_info {plan.camera_info}, "
          f"sparse points {plan.sparse_points or NONE}, ground truth {plan.gt_depth or NONE}", file=sys.stderr)
    if extrinsics is not None:
        print(f"replay: extrinsics from /tf_static {'via tf2' if use_tf2 else 'as static parameters'}: "
              f"translation {[round(v, 4) for v in extrinsics[0]]}, rotation "
              f"{[round(v, 4) for v in extrinsics[1]]}", file=sys.stderr)
    static_topics = {plan.tf_static} if use_tf2 and plan.tf_static else set()
    return _Setup(plan, frames, _node_parameters(args, plan, extrinsics, use_tf2), remaps,
                  {t: bag.msgtype(t) for t in plan.inputs() if t != plan.tf_static or use_tf2}, static_topics)


def replay(args: argparse.Namespace, stop: threading.Event) -> ReplaySummary:
    """Replay as the flags say; `stop` set (by Ctrl-C) ends it early with a complete, readable output bag."""
    if args.params and not Path(args.params).is_file():
        raise BagError(f"--params {args.params}: no such file")
    if not args.lossless and args.rate <= 0:
        raise BagError(f"--rate must be positive (got {args.rate})")
    if Path(args.out).exists():
        raise BagError(f"--out {args.out} already exists: choose another output path or remove it")
    start_s = time.monotonic()
    with BagReader(args.in_bag) as bag:
        setup = _setup(args, bag)
        # rclpy and torch load only now: a wrong bag or flag fails in a fraction of a second.
        from depth_ft_ros.bag.preview import pick_frames, write_previews
        from depth_ft_ros.ros.replay_analysis import OutputAnalyzer
        from depth_ft_ros.ros.replay_session import ReplaySession

        plan, frames = setup.plan, setup.frames
        writer: BagWriter | None = None  # created once the node runs: a node that fails leaves no bag behind
        clock = {"ns": 0}
        analyzer: OutputAnalyzer | None = None

        def on_output(topic: str, msgtype: str, data: bytes, arrival_s: float) -> None:
            if writer is not None and analyzer is not None:
                writer.write(topic, msgtype, clock["ns"], data)
                analyzer.on_output(topic, msgtype, data, arrival_s)

        session = ReplaySession(args.namespace, setup.remaps, setup.params, args.params, setup.inputs,
                                setup.static_topics, on_output, domain_id=args.domain_id)
        print(f"replay: ROS domain {session.domain_id}"
              + (" (private, localhost only; --domain-id to choose)" if args.domain_id is None else ""),
              file=sys.stderr)
        summary = ReplaySummary(str(bag.path), str(args.out), "lossless" if args.lossless else f"rate {args.rate:g}",
                                frames, "depth" if plan.sparse_points else "depth/relative", {})
        try:
            session.start()
            summary.node = session.describe_node()
            writer = BagWriter(args.out)
            analyzer = OutputAnalyzer(frames, args.namespace, summary.node.get("space") or "depth",
                                      pick_frames(len(frames)) if args.preview else [])
            _play(bag, plan, session, analyzer, writer, frames, args, clock, stop)
        except KeyboardInterrupt:  # a second Ctrl-C: abort whatever runs (e.g. a model still loading)
            stop.set()
        finally:
            summary.interrupted = stop.is_set()
            session.close()
            if writer is not None:
                writer.close()
    summary.output_counts = dict(writer.counts) if writer is not None else {}
    summary.wall_s = time.monotonic() - start_s
    if analyzer is not None:
        for warning in analyzer.warnings:
            print(f"replay: {warning}", file=sys.stderr)
        if args.preview:
            write_previews(Path(args.preview), summary, analyzer.preview_frames())
    return summary


def _install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    """Ctrl-C (and SIGTERM, from `timeout`, systemd, CI) ask the replay to stop between two messages, so the
    output bag is always finished whole; a second one aborts at once. Returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"\nreplay: {signal.Signals(signum).name}: finishing the output bag (again to abort)", file=sys.stderr)

    return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    previous = _install_stop_handlers(stop)
    try:
        summary = replay(args, stop)
    except DepthFtError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(summary.format())
    if args.preview:
        print(f"  previews: {args.preview}")
    if args.summary_json:
        summary.write_json(Path(args.summary_json))
    return 130 if summary.interrupted else 0
