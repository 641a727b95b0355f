"""The fleet summary (fleet.report.write_summary) and the compare report (fleet.compare, `fleet-compare`).

Independent references: tables with per-frame values the test chose, whose means, shares and throughput are
computed here from those values; scipy.stats.bootstrap (percentile method) for the interval over bags; a
constant difference, whose interval is that constant.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from depth_ft_ros.cli import main
from depth_ft_ros.fleet.compare import bootstrap_mean_ci, compare_runs, compare_tables
from depth_ft_ros.fleet.report import write_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_bag(run: Path, bag: str, absrel: list[float], methods: list[str], stamps_s: list[float] | None = None,
               camera: str = "") -> None:
    n = len(absrel)
    stamps = stamps_s if stamps_s is not None else [0.1 * i for i in range(n)]
    table = pa.table({
        "bag": [bag] * n, "camera": [camera] * n, "frame_id": ["cam"] * n,
        "stamp_ns": pa.array([int(1e18 + s * 1e9) for s in stamps], pa.int64()),
        "alignment_method": methods, "alignment_state": ["fitted"] * n,
        "heldout_absrel": pa.array(absrel, pa.float64()),
        "heldout_rmse_m": pa.array([2 * a for a in absrel], pa.float64()),
        "gt_absrel": pa.array([math.nan] * n, pa.float64()),
        "confidence_p50": pa.array([0.5] * n, pa.float64()),
        "ms_pipeline": pa.array([10.0] * n, pa.float64()),
    })
    (run / bag).mkdir(parents=True)
    pq.write_table(table, run / bag / "frames.parquet")


def test_summary_numbers_follow_the_tables_and_the_run_record(tmp_path: Path) -> None:
    _write_bag(tmp_path, "bag_a", [0.1, 0.2, math.nan, 0.3], ["local", "local", "global", "local"],
               stamps_s=[0.0, 0.5, 1.0, 2.0])
    _write_bag(tmp_path, "bag_b", [0.05, 0.15], ["global", "global"], stamps_s=[0.0, 1.0])
    _write_bag(tmp_path, "bag_c.partial-1a2b3c4d", [9.0], ["local"])  # in progress: not part of the summary
    (tmp_path / "fleet_run.json").write_text(json.dumps(
        {"wall_s": 4.0, "failed": [{"bag": "broken", "reason": "truncated MCAP"}]}))
    path = write_summary(tmp_path)
    text = path.read_text()
    assert path == tmp_path / "summary.md"
    assert (tmp_path / "summary.png").read_bytes()[:8] == PNG_MAGIC
    assert "bag_c" not in text
    assert "- bags: 3 (2 with output, 1 failed)" in text
    assert "frames: 6," in text
    assert f"{6 / 4.0:.2f} frames/s" in text  # frames / wall time
    assert f"{(2.0 + 1.0) / 4.0:.2f} hours of log per hour" in text  # log seconds / wall seconds
    pooled = np.mean([0.1, 0.2, 0.3, 0.05, 0.15])  # per frame, frames without a value left out
    assert f"held-out LiDAR (mean over 5 scored frames): AbsRel {pooled:.4f}" in text
    assert f"| bag_a | (single) | 4 | 2.0 | {np.mean([0.1, 0.2, 0.3]):.4f} |" in text
    assert "local 75%, global 25%" in text  # bag_a's method shares
    assert "local 50%, global 50%" in text  # overall: 3 of 6 frames each
    assert "- broken: truncated MCAP" in text
    assert "GT AbsRel" not in text  # no bag has ground truth
    assert "| pipeline |" in text and "| bag_a | 10.0 |" in text  # stage timings


def test_bootstrap_interval_matches_scipy() -> None:
    diffs = np.random.default_rng(5).normal(-0.01, 0.02, size=12)
    low, high = bootstrap_mean_ci(diffs, confidence=0.95, n_resamples=20_000)
    ref = stats.bootstrap((diffs,), np.mean, confidence_level=0.95, method="percentile", n_resamples=20_000,
                          random_state=1).confidence_interval
    se = diffs.std(ddof=1) / np.sqrt(diffs.size)
    assert low == pytest.approx(ref.low, abs=0.05 * se)
    assert high == pytest.approx(ref.high, abs=0.05 * se)
    assert bootstrap_mean_ci(np.full(7, -0.02)) == pytest.approx((-0.02, -0.02))  # no spread: the value itself


def test_compare_pairs_frames_and_reports_the_difference(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    expected_diff = []
    for i in range(6):
        a = rng.uniform(0.1, 0.3, 8)
        b = a - rng.uniform(0.005, 0.03)
        b_written = b.copy()
        b_written[0] = math.nan  # B has no fit for frame 0: left out of both sides for this bag
        _write_bag(run_a, f"bag{i}", a.tolist(), ["local"] * 8)
        _write_bag(run_b, f"bag{i}", b_written.tolist(), ["local"] * 8)
        expected_diff.append(np.mean(b[1:]) - np.mean(a[1:]))
    _write_bag(run_a, "only_in_a", [0.2], ["local"])
    comparison = compare_tables(run_a, run_b, "base", "tuned")
    assert [r.frames for r in comparison.rows] == [7] * 6
    assert comparison.mean_diff == pytest.approx(np.mean(expected_diff))
    assert comparison.only_a == ["only_in_a"]
    assert comparison.ci_high < 0  # every bag improved

    out = tmp_path / "report"
    assert main(["fleet-compare", str(run_a), str(run_b), "--out", str(out), "--label-a", "base",
                 "--label-b", "tuned"]) == 0
    text = (out / "compare.md").read_text()
    assert (out / "compare.png").read_bytes()[:8] == PNG_MAGIC
    assert "tuned has the lower held-out AbsRel" in text
    assert f"difference {np.mean(expected_diff):+.4f}" in text
    assert "only_in_a" in text
    assert compare_runs(run_a, run_b, tmp_path / "again", "base", "tuned").read_text() == text


def _manifest(run: Path, bag: str, size: int, model: str, alignment: str) -> None:
    (run / bag / "manifest.json").write_text(json.dumps({
        "input": {"uri": f"/bags/{bag}", "files": [{"name": f"{bag}.mcap", "size": size, "mtime_ns": 1}]},
        "models": {"depth_model": {"id": model, "sha256": model * 8}},
        "params": {"depth_model": model, "alignment": alignment, "min_points": 10}}))


def test_compare_names_what_differs_and_skips_other_inputs(tmp_path: Path) -> None:
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    for bag, size_b in (("same", 100), ("recorded_again", 120)):
        _write_bag(run_a, bag, [0.2, 0.3], ["global"] * 2)
        _write_bag(run_b, bag, [0.1, 0.2], ["global"] * 2)
        _manifest(run_a, bag, 100, "base", "local")
        _manifest(run_b, bag, size_b, "tuned", "global")
    comparison = compare_tables(run_a, run_b, "A", "B")
    assert [r.bag for r in comparison.rows] == ["same"]
    assert comparison.other_input == ["recorded_again"]  # same name, other files: not the same bag
    assert comparison.differences == [
        "depth model: A base (sha256 basebasebase), B tuned (sha256 tunedtunedtu)",
        "parameter alignment: A 'local', B 'global' (not only the checkpoint differs)"]
    text = compare_runs(run_a, run_b, tmp_path / "out", "A", "B").read_text()
    assert "other input files (not compared): recorded_again" in text
    assert "- parameter alignment: A 'local', B 'global'" in text
    assert "Only one bag was scored by both runs" in text


def test_compare_refuses_a_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet-compare", str(tmp_path / "nope"), str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "nope does not exist" in capsys.readouterr().err
