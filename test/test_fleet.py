"""`depth-ft-ros fleet` against the node itself and against broken input.

Independent reference: a lossless `replay` of the same bag through the real node (rclpy, DDS) with the same
parameters: the fleet's depth, confidence and cloud must equal what the node published, frame for frame. The
bad bags are made here by hand (truncated, empty, no camera_info, a vendor message type, an unreadable file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from fleet_fixtures import (
    FAST,
    LIDAR_ONLY,
    assert_same_outputs,
    bag_without,
    demo_bag,
    empty_bag,
    read_bag,
    stamp_ns,
    tiny_models,
    truncated_bag,
    unknown_type_bag,
)
from test_replay import mcap_topic_counts

from depth_ft_ros.cli import main

pytestmark = pytest.mark.ros
NS = "/depth_ft"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return tiny_models(tmp_path_factory.mktemp("models"))


def fleet(inputs: list[str], out: Path, models: list[str], *extra: str) -> int:
    return main(["fleet", *inputs, "--out", str(out), *models, *FAST, *LIDAR_ONLY, "--address", "none",
                 "--outputs", "depth/image", "depth/camera_info", "depth/confidence", "points", *extra])


def replay(bag: Path, out: Path, models: list[str], *extra: str) -> dict[str, list[object]]:
    assert main(["replay", str(bag), "--out", str(out), "--lossless", *models, *FAST, *LIDAR_ONLY, *extra]) == 0
    return read_bag(out)


@pytest.fixture(scope="module")
def one_bag(tmp_path_factory: pytest.TempPathFactory, models: list[str]) -> dict[str, Any]:
    """One demo bag through `fleet` and through a lossless `replay` (with its summary)."""
    root = tmp_path_factory.mktemp("one_bag")
    bag = demo_bag(root / "drive_0", 3)
    rc = fleet([str(bag)], root / "out", models)
    node = replay(bag, root / "replayed", models, "--summary-json", str(root / "summary.json"))
    return {"rc": rc, "root": root, "node": node, "summary": json.loads((root / "summary.json").read_text())}


def test_fleet_equals_a_lossless_replay_of_the_bag(one_bag: dict[str, Any]) -> None:
    root = one_bag["root"]
    assert one_bag["rc"] == 0
    ours = read_bag(root / "out" / "drive_0" / "bag")
    assert_same_outputs(ours, NS, one_bag["node"], NS, frames=3)

    table = pq.read_table(root / "out" / "drive_0" / "frames.parquet").to_pylist()
    assert [row["stamp_ns"] for row in table] == [stamp_ns(m) for m in ours[f"{NS}/depth/image"]]
    assert {row["bag"] for row in table} == {"drive_0"} and {row["frame_id"] for row in table} == {
        "camera_optical_frame"}
    assert all(row["points_used"] > 100 and row["alignment_state"] == "fitted" for row in table)
    manifest = json.loads((root / "out" / "drive_0" / "manifest.json").read_text())
    assert manifest["input"]["files"] and manifest["models"]["depth_model"]["sha256"]
    assert manifest["params"]["processing_resolution"] == 96
    summary = json.loads((root / "out" / "fleet_run.json").read_text())
    assert summary["bags"] == {"total": 1, "done": 1, "skipped": 0, "failed": 0}
    assert summary["frames_out"] == 3 and summary["frames_per_s"] > 0
    assert summary["log_s"] == pytest.approx(0.2)  # 3 frames at 10 Hz


def test_output_bag_opens_on_humble_and_with_the_mcap_reader(one_bag: dict[str, Any]) -> None:
    """Metadata version 8 (the newest Humble's `ros2 bag` parses); every message decodes with the reference mcap +
    mcap-ros2-support readers, as many as rosbags reads."""
    out_bag = one_bag["root"] / "out" / "drive_0" / "bag"
    info = yaml.safe_load((out_bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 8
    counts = mcap_topic_counts(out_bag)
    assert counts == {topic: len(msgs) for topic, msgs in read_bag(out_bag).items()}
    assert counts == {f"{NS}/{topic}": 3 for topic in ("depth/image", "depth/camera_info", "depth/confidence",
                                                       "points")}


def test_table_ground_truth_metrics_equal_the_replay_summary(one_bag: dict[str, Any]) -> None:
    """The evaluation columns against the bag's ground truth equal what the replay summary reports per frame."""
    pytest.importorskip("depth_ft_ros.fleet.evaluate")
    table = pq.read_table(one_bag["root"] / "out" / "drive_0" / "frames.parquet").to_pylist()
    frames = {f["stamp_ns"]: f["metrics"] for f in one_bag["summary"]["frames"]}
    assert len(table) == len(frames) == 3
    for row in table:
        for name in ("absrel", "rmse_m", "delta1"):
            assert row[f"gt_{name}"] == pytest.approx(frames[row["stamp_ns"]][name], rel=1e-6), name


@pytest.mark.slow
def test_sqlite3_bag_and_two_cameras_with_one_lidar_equal_the_node(tmp_path: Path, models: list[str]) -> None:
    """sqlite3 storage; and a two-camera bag with one shared LiDAR against a two-camera lossless replay (the node
    with cameras=[front,left]). A lossless replay sends one image at a time, so each frame has its own forward:
    max_batch=1 gives the fleet the same (a batch of two differs from two of one by float rounding, ~3e-5
    relative on this CPU)."""
    sqlite = demo_bag(tmp_path / "sq", 3, storage="sqlite3", seed=1)
    assert fleet([str(sqlite)], tmp_path / "out", models) == 0
    assert_same_outputs(read_bag(tmp_path / "out" / "sq" / "bag"), NS, replay(sqlite, tmp_path / "r_sq", models), NS,
                        frames=3)

    assert main(["make-demo-bag", str(tmp_path / "two"), "--frames", "3", "--size", "96x72",
                 "--cameras", "front", "left"]) == 0
    cameras = ["--param", "cameras=[front,left]", "--param", "max_batch=1"]
    assert fleet([str(tmp_path / "two")], tmp_path / "out2", models, *cameras) == 0
    ours = read_bag(tmp_path / "out2" / "two" / "bag")
    node = replay(tmp_path / "two", tmp_path / "r_two", models, *cameras)
    for camera in ("front", "left"):
        assert_same_outputs(ours, f"{NS}/{camera}", node, f"{NS}/{camera}", frames=3)
    rows = pq.read_table(tmp_path / "out2" / "two" / "frames.parquet").to_pylist()
    assert sorted(r["camera"] for r in rows) == ["front"] * 3 + ["left"] * 3
    assert {r["frame_id"] for r in rows} == {m.header.frame_id for m in node[f"{NS}/front/depth/image"]} | {
        m.header.frame_id for m in node[f"{NS}/left/depth/image"]}


def test_bad_bags_are_named_the_others_complete_and_a_rerun_skips_them(
        tmp_path: Path, models: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    demo = demo_bag(tmp_path / "good", 1)
    bags = tmp_path / "bags"
    bags.mkdir()
    bad = {
        "truncated": truncated_bag(demo, bags / "truncated"),
        "empty": empty_bag(bags / "empty"),
        "no_info": bag_without(demo, bags / "no_info", "/camera/camera_info"),
        "vendor": unknown_type_bag(demo, bags / "vendor"),
    }
    (bags / "junk.db3").write_bytes(b"SQLite format 3\0" + bytes(200))  # a storage file that is no bag
    if os.geteuid() != 0:  # root reads a file of mode 000
        bad["locked"] = bags / "locked.mcap"
        bad["locked"].write_bytes(next(demo.glob("*.mcap")).read_bytes())
        bad["locked"].chmod(0)
    capsys.readouterr()
    rc = fleet([str(demo), str(bags / "*"), str(tmp_path / "missing")], tmp_path / "out", models)
    err = capsys.readouterr().err
    assert rc == 1
    summary = json.loads((tmp_path / "out" / "fleet_run.json").read_text())
    reasons = {Path(f["uri"]).stem: f["reason"] for f in summary["failed"]}
    assert set(reasons) == {*bad, "junk", "missing"}
    assert "cannot read" in reasons["truncated"]
    assert "no messages" in reasons["empty"] or "no camera image" in reasons["empty"]
    assert "CameraInfo" in reasons["no_info"]
    assert "acme_msgs/msg/Frame" in reasons["vendor"]  # the topic list names the unknown type
    assert "no such file" in reasons["missing"]
    assert "cannot read the bag" in reasons["junk"]
    if "locked" in reasons:
        assert "Permission" in reasons["locked"]
    for failed in summary["failed"]:  # on stderr too, with the input as given
        assert f"fleet: failed: {failed['uri']}: {failed['reason'].splitlines()[0]}" in err
    assert summary["bags"]["done"] == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [  # nothing partial
        "fleet_run.json", "good", "summary.md", "summary.png"]
    report = (tmp_path / "out" / "summary.md").read_text()
    assert all(f"- {f['bag']}: " in report for f in summary["failed"])  # the summary names them too

    written = (tmp_path / "out" / "good" / "manifest.json").stat().st_mtime_ns
    assert fleet([str(demo)], tmp_path / "out", models) == 0
    assert "skipped 1 bag(s) whose outputs match" in capsys.readouterr().err
    assert (tmp_path / "out" / "good" / "manifest.json").stat().st_mtime_ns == written
    # Other parameters: the outputs no longer match, so the bag runs again and its outputs are replaced.
    assert fleet([str(demo)], tmp_path / "out", models, "--param", "min_points=20") == 0
    manifest = json.loads((tmp_path / "out" / "good" / "manifest.json").read_text())
    assert manifest["params"]["min_points"] == 20
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "fleet_run.json", "good", "summary.md", "summary.png"]


def test_flags_fail_at_start_naming_the_parameter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", str(tmp_path), "--out", str(tmp_path / "o"), "--depth-model", "x",
                 "--param", "alignment=best"]) == 2
    assert "alignment='best'" in capsys.readouterr().err
    assert main(["fleet", str(tmp_path), "--out", str(tmp_path / "o"), "--depth-model", "x",
                 "--outputs", "depth/imag"]) == 2
    assert "--outputs depth/imag" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
