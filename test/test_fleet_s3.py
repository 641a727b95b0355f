"""Bags read from and outputs written to an S3 API served on 127.0.0.1 (moto's server mode, a real HTTP server),
compared with the same bags run from and to local folders: the same output messages and table, and a re-run
that skips them by the manifests on the object store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fleet_fixtures import FAST, LIDAR_ONLY, as_array, demo_bag, read_bag, tiny_models

from depth_ft_ros.cli import main

pytestmark = [pytest.mark.ros, pytest.mark.slow]
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
    try:
        yield client
    finally:
        server.stop()


def upload(client: object, local: Path, bucket: str, prefix: str) -> None:
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        client.upload_file(str(file), bucket, f"{prefix}/{file.relative_to(local).as_posix()}")  # type: ignore[attr-defined]


def download(client: object, bucket: str, prefix: str, local: Path) -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])  # type: ignore[attr-defined]
    names = [o["Key"] for o in listed]
    # Folder markers (empty objects named like a folder, which some writers create) are no files.
    keys = [k for k in names if not k.endswith("/") and not any(n.startswith(k + "/") for n in names)]
    for key in keys:
        target = local / key[len(prefix) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(target))  # type: ignore[attr-defined]
    return sorted(k[len(prefix) + 1:] for k in keys)


def test_s3_inputs_and_outputs_equal_local_ones(tmp_path: Path, s3: object,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    models = tiny_models(tmp_path / "models")
    local_in = tmp_path / "in"
    folder = demo_bag(local_in / "drive_a", 2)
    bare = demo_bag(tmp_path / "b", 2, seed=3)
    (local_in / "drive_b.mcap").write_bytes(next(bare.glob("*.mcap")).read_bytes())  # a bare MCAP file
    s3.create_bucket(Bucket="logs")  # type: ignore[attr-defined]
    s3.create_bucket(Bucket="results")  # type: ignore[attr-defined]
    upload(s3, local_in, "logs", "robot1/2026-12-07")
    flags = [*models, *FAST, *LIDAR_ONLY, "--address", "none", "--outputs", "depth/image", "points"]

    assert main(["fleet", str(local_in / "*"), "--out", str(tmp_path / "local_out"), *flags]) == 0
    assert main(["fleet", "s3://logs/robot1/2026-12-07/*", "--out", "s3://results/fleet", *flags]) == 0
    keys = download(s3, "results", "fleet", tmp_path / "s3_out")
    assert not [k for k in keys if ".partial-" in k]
    assert {"drive_a/manifest.json", "drive_b/manifest.json", "drive_a/frames.parquet", "fleet_run.json",
            "drive_b/bag/metadata.yaml"} <= set(keys)
    for name in (folder.name, "drive_b"):
        ours, local = read_bag(tmp_path / "s3_out" / name / "bag"), read_bag(tmp_path / "local_out" / name / "bag")
        assert set(ours) == set(local) == {"/depth_ft/depth/image", "/depth_ft/points"}
        for topic in ours:
            assert len(ours[topic]) == 2
            for a, b in zip(ours[topic], local[topic], strict=True):
                np.testing.assert_array_equal(as_array(a), as_array(b))
        columns = [c for c in pq.read_schema(tmp_path / "local_out" / name / "frames.parquet").names
                   if not c.startswith("ms_")]
        pd.testing.assert_frame_equal(  # NaN equal to NaN (no confidence output: its quantiles are NaN)
            pq.read_table(tmp_path / "s3_out" / name / "frames.parquet", columns=columns).to_pandas(),
            pq.read_table(tmp_path / "local_out" / name / "frames.parquet", columns=columns).to_pandas())

    capsys.readouterr()
    assert main(["fleet", "s3://logs/robot1/2026-12-07", "--out", "s3://results/fleet", *flags]) == 0
    assert "skipped 2 bag(s) whose outputs match" in capsys.readouterr().err
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
