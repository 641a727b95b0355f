"""Which bags a fleet command line names, and where their outputs go (no models, no ROS): folders, bare files,
globs, folders of bags, and bags of the same name from two robots. The reference is the tree made here."""

from __future__ import annotations

from pathlib import Path

from depth_ft_ros.fleet.sources import expand_inputs
from depth_ft_ros.fleet.store import OutputStore


def bag_dir(path: Path, storage: str = "mcap") -> Path:
    path.mkdir(parents=True)
    (path / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    (path / f"{path.name}_0.{storage}").write_bytes(b"x" * 10)
    return path


def test_folders_files_globs_and_names(tmp_path: Path) -> None:
    a = bag_dir(tmp_path / "robot1" / "day1")
    b = bag_dir(tmp_path / "robot2" / "day1", "db3")
    c = bag_dir(tmp_path / "robot2" / "day2")
    bare = tmp_path / "loose" / "drive.mcap"
    bare.parent.mkdir()
    bare.write_bytes(b"y" * 7)
    (tmp_path / "loose" / "notes.txt").write_text("no bag")
    sources, problems = expand_inputs([str(tmp_path / "robot*" / "day1"), str(c / "day2_0.mcap"), str(c),
                                       str(tmp_path / "loose"), str(tmp_path / "nothing*"), str(tmp_path / "gone")])
    assert [s.uri for s in sources] == [str(a), str(b), str(c), str(bare)]  # c named twice: once
    names = [s.name for s in sources]
    assert names[2:] == ["day2", "drive"]
    assert names[0].startswith("day1-") and names[1].startswith("day1-") and names[0] != names[1]
    assert [s.is_dir for s in sources] == [True, True, True, False]
    assert sources[3].files[0][:2] == ("drive.mcap", 7)
    assert {f[0] for f in sources[0].files} == {"metadata.yaml", "day1_0.mcap"}
    assert [(Path(p.uri).name, p.reason) for p in problems] == [
        ("nothing*", "the pattern matches nothing"), ("gone", "no such file, folder or object")]
    # A folder holding bags at any depth names each of them.
    found, _ = expand_inputs([str(tmp_path)])
    assert sorted(s.uri for s in found) == sorted([str(a), str(b), str(c), str(bare)])


def test_publish_replaces_whole_and_partials_are_removed(tmp_path: Path) -> None:
    store = OutputStore(str(tmp_path / "out"))
    work = store.work_dir("day1")
    assert ".partial-" in work.name and work.parent == tmp_path / "out"
    (work / "frames.parquet").write_bytes(b"1")
    store.publish("day1", work, {"v": 1})
    assert store.manifest("day1") == {"v": 1}
    again = store.work_dir("day1")
    (again / "frames.parquet").write_bytes(b"2")
    store.publish("day1", again, {"v": 2})
    assert (tmp_path / "out" / "day1" / "frames.parquet").read_bytes() == b"2"
    left = store.work_dir("day2")  # a run killed while building day2
    assert store.manifest("day2") is None
    assert store.remove_partials() == [left.name]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["day1"]
