"""gpu_check in its CPU smoke mode: every CUDA part says "no CUDA", the same code runs on the CPU with tiny
checkpoints, and one JSON + one Markdown table name the versions (what `make gpu-check` writes on a GPU)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from depth_ft_ros.bench import gpu_check

NO_CUDA_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU smoke run; on CUDA `make gpu-check`")
FAST_PARTS = ("cuda tests", "predictor", "models", "node")  # finetune and the ONNX export: the slow test


@NO_CUDA_ONLY
def test_gpu_check_smoke_run_of_the_inference_parts(tmp_path) -> None:
    doc = gpu_check.run_check(tmp_path, quick=True, runs=1, parts=FAST_PARTS)
    rows = doc["rows"]
    assert [r["part"] for r in rows if r["status"] == "no CUDA"] == list(FAST_PARTS)
    assert all(r["status"] == "ok" for r in rows if r["mode"] == "cpu smoke"), rows
    values = {r["case"]: r["values"] for r in rows if r["mode"] == "cpu smoke"}
    assert values["64 diffusers MarigoldDepthPipeline fp32"]["max_abs_diff"] < 1e-3
    node = next(v for case, v in values.items() if case.startswith("640x480"))
    assert node["frames"] == 3 and node["latency_p50_ms"] > 0 and node["cpu_ms_per_output"] > 0


@pytest.mark.slow
@NO_CUDA_ONLY
def test_gpu_check_smoke_run_without_cuda(tmp_path) -> None:
    doc = gpu_check.run_check(tmp_path, quick=True, runs=1)
    on_disk = json.loads((tmp_path / "gpu-check.json").read_text())
    assert on_disk["rows"] == json.loads(json.dumps(doc["rows"]))
    env = doc["environment"]
    assert env["gpu"] == "no CUDA" and env["torch"] == torch.__version__
    assert {"driver", "cuda", "onnxruntime", "tensorrt", "diffusers"} <= set(env)
    rows = doc["rows"]
    parts = [name for name, _, _ in gpu_check.PARTS]
    for part in parts:  # each part: one "no CUDA" row, then its smoke rows, none failed
        mine = [r for r in rows if r["part"] == part]
        assert mine[0]["status"] == "no CUDA", mine
        smoke = [r for r in mine if r["mode"] == "cpu smoke"]
        assert smoke and all(r["status"] == "ok" for r in smoke), smoke
    values = {r["case"]: r["values"] for r in rows if r["mode"] == "cpu smoke"}
    predictor = values["64 DepthFtPredictor fp32"]
    assert 0 < predictor["total_ms"] < 60_000 and predictor["processing"] == "64x48"
    diffusers = values["64 diffusers MarigoldDepthPipeline fp32"]
    assert diffusers["max_abs_diff"] < 1e-3  # same weights, same output as diffusers' pipeline
    node = next(v for case, v in values.items() if case.startswith("640x480"))
    assert node["frames"] == 3 and node["latency_p50_ms"] > 0 and node["cpu_ms_per_output"] > 0
    assert math.isnan(node["gpu_peak_mib"])
    batched = values["3 camera(s), depth"]
    assert batched["batched_ms"] > 0 and batched["one_at_a_time_ms"] > 0
    step = next(v for case, v in values.items() if case.startswith("one step"))
    assert step["step_ms"] > 0
    table = (tmp_path / "gpu-check.md").read_text()
    assert "| part | case | mode | status | values |" in table and table.count("no CUDA") >= len(parts)
