"""The eval-alignment verb, quick subset, and its BENCHMARKS.md section handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from depth_ft_ros import cli
from depth_ft_ros.cli import eval_alignment


def test_quick_run_prints_tables_and_writes_only_its_section(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# Benchmarks\n\n## Predictor\n\nother team's numbers\n")
    argv = ["eval-alignment", "--quick", "--write-benchmarks", "--benchmarks-path", str(bench)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "## Metric alignment" in out and "| random 500 | 500 |" in out and "| lidar 16 lines |" in out
    assert "local correction" in out and "cloud_arrays" in out  # the speed table
    # global vs local on the smooth distortion: the local column is much lower
    row = next(line for line in out.splitlines() if line.startswith("| random 500 |"))
    absrel_global, absrel_local = (float(x) for x in row.split("|")[3:5])
    assert absrel_local < 0.25 * absrel_global
    first = bench.read_text()
    assert "other team's numbers" in first and first.count(eval_alignment.BEGIN_MARK) == 1
    assert cli.main(argv) == 0  # a second run replaces the section instead of appending one
    second = bench.read_text()
    assert second.count(eval_alignment.BEGIN_MARK) == 1 and "other team's numbers" in second
    assert second.index("## Predictor") < second.index(eval_alignment.BEGIN_MARK)


def test_section_replacement_keeps_later_sections(tmp_path: Path) -> None:
    bench = tmp_path / "BENCHMARKS.md"
    eval_alignment.write_benchmarks(bench, ["old"])
    bench.write_text(bench.read_text() + "\n## Later\n\nkept\n")
    eval_alignment.write_benchmarks(bench, ["new"])
    text = bench.read_text()
    assert "new" in text and "old" not in text and text.endswith("## Later\n\nkept\n")
