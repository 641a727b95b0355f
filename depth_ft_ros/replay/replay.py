"""A rosbag2 through the real node, its outputs recorded to MCAP: `Replay(ReplayOptions(...)).run()`.

The bag's camera image, camera_info and sparse points are published to an in-process DepthFtNode (use_sim_time,
with /clock from the bag); every topic the node publishes is recorded, together with the played inputs, into
an MCAP rosbag2 for `ros2 bag`, Foxglove or rosbags. The summary gives frames in/out/dropped, latency, the
metric scale/shift over time and, when the bag has ground-truth depth, AbsRel/RMSE/delta1.

With the node's `cameras` parameter (--param or --params) the bag's cameras are played to one node: camera C's
image, camera_info and ground truth are the topics with C in their name (replay/topics.py), the LiDAR is shared.

Parameters, lowest precedence first: the node's defaults, the params file, then the bag's LiDAR extrinsics (from
/tf_static, when tf2 is not importable), depth_model/normals_model and the explicit overrides.
rclpy and torch load only once the bag and the options are known to be good (in `run`).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from depth_ft_ros.config import NodeConfig, param_spec
from depth_ft_ros.errors import ConfigError, DepthFtError, InputError
from depth_ft_ros.geometry.pose import matrix_to_pose
from depth_ft_ros.msgs import names
from depth_ft_ros.replay import messages as m
from depth_ft_ros.replay.playback import Pacer, Progress, lead_topics
from depth_ft_ros.replay.report import FrameRecord, ReplaySummary
from depth_ft_ros.replay.rosbag_io import BagError, BagReader, BagWriter
from depth_ft_ros.replay.topics import NONE, TopicPlan, choose_topics
from depth_ft_ros.replay.transforms import lookup_static

if TYPE_CHECKING:
    from depth_ft_ros.replay.analysis import OutputAnalyzer
    from depth_ft_ros.replay.session import ReplaySession


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay and how; topics left None are guessed from the bag (bag.topics)."""

    in_bag: Path  # rosbag2 directory (MCAP or sqlite3)
    out_bag: Path  # output MCAP bag directory (must not exist)
    params_file: Path | None = None  # node parameters YAML
    depth_model: str | None = None
    normals_model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # node parameter overrides (see parse_param_overrides)
    lossless: bool = False  # send each frame only after the node's outputs for the previous one
    rate: float = 1.0  # otherwise play at rate x real time
    image_topic: str | None = None
    camera_info_topic: str | None = None
    sparse_points_topic: str | None = None  # or bag.topics.NONE
    gt_depth_topic: str | None = None  # or bag.topics.NONE
    preview_dir: Path | None = None  # preview PNGs and a scale/shift plot
    namespace: str = "depth_ft"
    domain_id: int | None = None  # None: a private domain, localhost only
    frame_timeout_s: float = 300.0  # lossless: give up on a frame with no output after this long

    def check(self) -> None:
        """BagError naming the option when one cannot work (before anything heavy loads)."""
        if self.params_file is not None and not self.params_file.is_file():
            raise BagError(f"--params {self.params_file}: no such file")
        if not self.lossless and self.rate <= 0:
            raise BagError(f"--rate must be positive (got {self.rate})")
        if self.out_bag.exists():
            raise BagError(f"--out {self.out_bag} already exists: choose another output path or remove it")
        if self.domain_id is not None and not 0 <= self.domain_id <= 232:  # DDS port mapping: no ports above
            raise BagError(f"--domain-id: ROS domain ids are 0..232 (got {self.domain_id})")


GRACE_S = 0.5  # after the node finished a frame, how long its outputs may still be in flight
STOP_DRAIN_S = 10.0  # after Ctrl-C, how long frames already sent may take to come out


def parse_param_overrides(items: list[str]) -> dict[str, Any]:
    """NAME=VALUE items (values in YAML), checked against the node's parameter table (rclpy would silently ignore an
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
        elif param_spec(name).string_list:  # cameras=[front,left] or cameras=front,left
            value = [str(v) for v in value] if isinstance(value, list) else \
                [part.strip() for part in str(value or "").split(",") if part.strip()]
        elif isinstance(default, list) and isinstance(value, list):
            try:
                value = [float(v) for v in value]
            except (TypeError, ValueError):
                raise ConfigError(f"--param {item!r}: expected a list of numbers") from None
        out[name] = value
    return out


def static_extrinsics(bag: BagReader, plan: TopicPlan) -> tuple[list[float], list[float]] | None:
    """static_translation / static_rotation (sparse-points frame -> camera frame) from /tf_static, if any."""
    if plan.sparse_points is None or plan.tf_static is None:
        return None
    image, cloud = bag.first(plan.image), bag.first(plan.sparse_points)
    if image is None or cloud is None:
        return None  # choose_topics only offers topics with messages; nothing to derive from an empty one
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


def _node_parameters(options: ReplayOptions, plans: dict[str, TopicPlan],
                     extrinsics: dict[str, tuple[list[float], list[float]]], use_tf2: bool) -> dict[str, Any]:
    plan = next(iter(plans.values()))
    params: dict[str, Any] = {"use_sim_time": True, "autostart": False,
                              "image_transport": "compressed" if plan.image_compressed else "raw"}
    if plan.sparse_points is None:
        params["sparse_input"] = "none"
    for camera, (translation, rotation) in extrinsics.items() if not use_tf2 else ():
        prefix = f"{camera}." if camera else ""  # several cameras: each its own (C.static_translation, ...)
        params[f"{prefix}static_translation"], params[f"{prefix}static_rotation"] = translation, rotation
    if options.depth_model is not None:
        params["depth_model"] = options.depth_model
    if options.normals_model is not None:
        params["normals_model"] = options.normals_model
    params.update(options.params)
    return params


def _expected_outputs(session: ReplaySession, has_sparse: bool, camera: str = "") -> set[str]:
    """The outputs (names relative to the camera's topics) every frame of `camera` should produce when all goes
    well: the fast path of _wait_frame; the node's counters decide for frames that end otherwise."""
    cfg = session.config
    rel: set[str] = set()
    if cfg.depth_model:
        rel |= {names.DEPTH_COLORIZED, names.DEPTH_CAMERA_INFO}
        if cfg.publish_relative:
            rel.add(names.DEPTH_RELATIVE)
        if has_sparse and cfg.alignment != "off":
            rel |= {names.DEPTH_IMAGE, names.POINTS}
    if cfg.normals_model:
        rel |= {names.NORMALS_IMAGE, names.NORMALS_CAMERA_INFO, names.NORMALS_COLORIZED}
    return {r for r in rel if f"{session.namespace}/{names.of_camera(camera, r)}" in session.output_topics}


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


def _play(bag: BagReader, plans: dict[str, TopicPlan], session: ReplaySession, analyzer: OutputAnalyzer,
          writer: BagWriter, frames: list[FrameRecord], options: ReplayOptions, clock: dict[str, int],
          stop: threading.Event) -> None:
    """Play the bag until its end or until `stop` (Ctrl-C) is set; only ever stops between two messages."""
    by_stamp = {(f.camera, f.stamp_ns): f for f in frames}
    camera_of_image = {plan.image: camera for camera, plan in plans.items()}
    camera_of_gt = {plan.gt_depth: camera for camera, plan in plans.items() if plan.gt_depth}
    expected = {camera: _expected_outputs(session, plan.sparse_points is not None, camera)
                for camera, plan in plans.items()}
    early = set(camera_of_gt)
    lead_ns = 0
    if options.lossless:
        early |= {t for plan in plans.values() for t in (plan.camera_info, plan.sparse_points, plan.tf) if t}
    if early:
        lead_ns = int((session.config.sync_tolerance + 0.05) * 1e9)
    pacer = None if options.lossless else Pacer(options.rate, stop)
    progress = Progress(len(frames))
    progress.update(0)
    sent = 0
    topics = list(dict.fromkeys([*(t for plan in plans.values() for t in plan.inputs()), *camera_of_gt]))
    input_qos = {topic: bag.offered_qos(topic) for topic in topics}  # the inputs are recorded as they were offered
    for topic, msgtype, log_ns, data in lead_topics(bag.messages(topics), early, lead_ns):
        if stop.is_set():
            break
        writer.write(topic, msgtype, log_ns, data, input_qos.get(topic))
        if topic in camera_of_gt:
            analyzer.add_ground_truth(data, camera_of_gt[topic])
            continue
        if not session.plays(topic):
            continue  # no tf2 here: the node got these transforms as static parameters
        if pacer is not None:
            pacer.wait(log_ns)
        clock["ns"] = max(clock["ns"], log_ns)  # side messages sent ahead must not turn /clock back
        camera = camera_of_image.get(topic)
        record = by_stamp.get((camera, m.stamp_ns_from_cdr(data))) if camera is not None else None
        finished_before = session.frames_finished()
        session.publish(topic, data, clock["ns"])
        if record is None:
            continue
        record.sent_s = time.monotonic()
        analyzer.image_sent(record, data, msgtype)
        sent += 1
        if options.lossless:
            _wait_frame(session, record, finished_before, expected[record.camera], options.frame_timeout_s, stop)
        progress.update(sent)
    if stop.is_set():  # Ctrl-C: still record the frames the node is working on (Ctrl-C again aborts)
        _drain(session, sent, min(options.frame_timeout_s, STOP_DRAIN_S), threading.Event())
    elif not options.lossless:
        _drain(session, sent, options.frame_timeout_s, stop)
    progress.close()


@dataclass
class _Setup:
    """Everything decided from the flags and the bag before ROS starts."""

    plans: dict[str, TopicPlan]  # per camera ("" for the single camera)
    frames: list[FrameRecord]
    params: dict[str, Any]
    remaps: dict[str, str]
    inputs: dict[str, str]  # topic -> msgtype published to the node
    static_topics: set[str]  # published TRANSIENT_LOCAL (/tf_static, only where tf2 can use it)


def _cameras(options: ReplayOptions) -> tuple[list[str], bool]:
    """The node's `cameras` and `sparse_per_camera`, from --param or the --params file (the topics depend on them)."""
    values: dict[str, Any] = {}
    if options.params_file is not None:
        loaded = yaml.safe_load(options.params_file.read_text(encoding="utf-8")) or {}
        for section in loaded.values() if isinstance(loaded, dict) else ():
            if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
                values.update(section["ros__parameters"])
    values.update(options.params)
    return [str(c) for c in values.get("cameras") or []], bool(values.get("sparse_per_camera", False))


def _setup(options: ReplayOptions, bag: BagReader) -> _Setup:
    cameras, per_camera = _cameras(options)
    if cameras and (options.image_topic or options.camera_info_topic):
        raise BagError("--image-topic / --camera-info-topic name one camera's topics; with several cameras each "
                       "camera C takes the bag topics with C in their name (/C/image_raw, /C/camera_info)")
    plans = {camera: choose_topics(bag, options.image_topic, options.camera_info_topic, options.sparse_points_topic,
                                   options.gt_depth_topic, camera=camera, sparse_per_camera=per_camera)
             for camera in cameras or [""]}
    camera_of_image = {plan.image: camera for camera, plan in plans.items()}
    if len(camera_of_image) != len(plans):
        raise BagError(f"{bag.path}: cameras {cameras} do not each have an image topic of their own: "
                       f"{ {c: p.image for c, p in plans.items()} }")
    frames = [FrameRecord(i, m.stamp_ns_from_cdr(data), camera_of_image[topic])
              for i, (topic, _mt, _n, data) in enumerate(bag.messages(list(camera_of_image)))]
    if not frames:
        raise BagError(f"{bag.path}: the image topic(s) {', '.join(camera_of_image)} have no messages")
    extrinsics = {camera: found for camera, plan in plans.items()
                  if (found := static_extrinsics(bag, plan)) is not None}
    # tf2 needs both tf2_ros (the node's listener) and tf2_msgs (to publish /tf and /tf_static here). Without it
    # the transforms are still recorded in the output bag, and the static extrinsics become node parameters.
    transforms = set().union(*(plan.transform_topics() for plan in plans.values()))
    use_tf2 = bool(transforms) and all(importlib.util.find_spec(p) for p in ("tf2_ros", "tf2_msgs"))
    remaps: dict[str, str] = {}
    for camera, plan in plans.items():
        image_name = names.IMAGE_COMPRESSED if plan.image_compressed else names.IMAGE
        remaps[names.of_camera(camera, image_name)] = plan.image
        remaps[names.of_camera(camera, names.CAMERA_INFO)] = plan.camera_info
        if plan.sparse_points:
            remaps[names.of_camera(camera if per_camera else "", names.SPARSE_POINTS)] = plan.sparse_points
        print(f"replay: {bag.path}{f' camera {camera}' if camera else ''} "
              f"({sum(f.camera == camera for f in frames)} frames): image {plan.image}, camera_info "
              f"{plan.camera_info}, sparse points {plan.sparse_points or NONE}, ground truth "
              f"{plan.gt_depth or NONE}", file=sys.stderr)
    for camera, (translation, rotation) in extrinsics.items():
        print(f"replay: extrinsics{f' of {camera}' if camera else ''} from /tf_static "
              f"{'via tf2' if use_tf2 else 'as static parameters'}: translation {[round(v, 4) for v in translation]}, "
              f"rotation {[round(v, 4) for v in rotation]}", file=sys.stderr)
    tf = next((plan.tf for plan in plans.values() if plan.tf), None)
    if tf and not use_tf2:
        print(f"replay: warning: {tf} is recorded but not played: tf2_ros is not importable here, so only "
              "/tf_static extrinsics reach the node (as parameters)", file=sys.stderr)
    tf_static = next((plan.tf_static for plan in plans.values() if plan.tf_static), None)
    static_topics = {tf_static} if use_tf2 and tf_static else set()
    inputs = {t: bag.msgtype(t) for plan in plans.values() for t in plan.inputs() if t not in transforms or use_tf2}
    return _Setup(plans, frames, _node_parameters(options, plans, extrinsics, use_tf2), remaps, inputs,
                  static_topics)


class Replay:
    """One replay of a bag through the node; `run` may be called once."""

    def __init__(self, options: ReplayOptions) -> None:
        options.check()
        self.options = options

    def run(self, stop: threading.Event | None = None) -> ReplaySummary:
        """Replay; `stop` set (by Ctrl-C) ends it early with a complete, readable output bag."""
        options = self.options
        stop = stop or threading.Event()
        start_s = time.monotonic()
        with BagReader(options.in_bag) as bag:
            setup = _setup(options, bag)
            # rclpy and torch load only now: a wrong bag or flag fails in a fraction of a second.
            from depth_ft_ros.replay.analysis import OutputAnalyzer
            from depth_ft_ros.replay.preview import pick_frames, write_previews
            from depth_ft_ros.replay.session import ReplaySession

            plans, frames = setup.plans, setup.frames
            has_sparse = any(plan.sparse_points for plan in plans.values())
            writer: BagWriter | None = None  # created once the node runs: a node that fails leaves no bag behind
            clock = {"ns": 0}
            analyzer: OutputAnalyzer | None = None

            def on_output(topic: str, msgtype: str, data: bytes, arrival_s: float) -> None:
                if writer is not None and analyzer is not None:
                    writer.write(topic, msgtype, clock["ns"], data, session.offered_qos(topic))
                    analyzer.on_output(topic, msgtype, data, arrival_s)

            params_file = str(options.params_file) if options.params_file is not None else None
            session = ReplaySession(options.namespace, setup.remaps, setup.params, params_file, setup.inputs,
                                    setup.static_topics, on_output, domain_id=options.domain_id)
            print(f"replay: ROS domain {session.domain_id}"
                  + (" (private, localhost only; --domain-id to choose)" if options.domain_id is None else ""),
                  file=sys.stderr)
            mode = "lossless" if options.lossless else f"rate {options.rate:g}"
            summary = ReplaySummary(str(bag.path), str(options.out_bag), mode, frames,
                                    names.DEPTH_IMAGE if has_sparse else names.DEPTH_RELATIVE, {})
            try:
                session.start()
                summary.node = session.describe_node()
                writer = BagWriter(options.out_bag)
                analyzer = OutputAnalyzer(frames, options.namespace, summary.node.get("space") or "depth",
                                          pick_frames(len(frames)) if options.preview_dir else [])
                _play(bag, plans, session, analyzer, writer, frames, options, clock, stop)
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
            if options.preview_dir:
                write_previews(options.preview_dir, summary, analyzer.preview_frames())
        return summary


__all__ = ["Replay", "ReplayOptions", "parse_param_overrides", "static_extrinsics"]
