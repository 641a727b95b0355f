"""ONNX export + ONNX Runtime (CPU provider, fp32) against the PyTorch path, the independent implementation.

Each exported stage must equal its torch stage within 1e-4 on a fresh input (not the probe's), and whole
frames through the predictor (and the node) must equal the torch predictor within 1e-4, or within 3x the
torch path's own disagreement with itself (channels_last vs the default layout) measured in the same run
where that is larger. The load-time probe must refuse an export whose weights were altered after export.

Default run: e2e-ft-depth at 640x480 / resolution 384, lotus-g-normals at 1280x720 / 128, lotus-d-disparity
(4-channel UNet, through the CLI, weights as external data), the node on e2e-ft-depth. Marked slow: the
other families, and the 768 cases (`make test-all`).
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from predictor_fixtures import random_rgb, tiny_model  # noqa: E402

from depth_ft_ros.errors import ConfigError, InputError  # noqa: E402
from depth_ft_ros.export.onnx_export import export_onnx  # noqa: E402
from depth_ft_ros.model.families import FAMILIES  # noqa: E402
from depth_ft_ros.model.onnx.runtime import (  # noqa: E402
    MANIFEST_NAME,
    PROVIDER_NAMES,
    ProbeMismatchError,
    read_manifest,
    resolve_providers,
)
from depth_ft_ros.model.predictor import DepthFtPredictor  # noqa: E402
from depth_ft_ros.model.stages import TorchStages  # noqa: E402

_ROOT = Path(tempfile.mkdtemp(prefix="depth_ft_onnx_test_"))
STAGE_TOLERANCE = 1e-4  # the issue's bound for one stage on the same input
FAST_FAMILIES = ("e2e-ft-depth", "lotus-g-normals", "lotus-d-disparity")


def teardown_module() -> None:
    shutil.rmtree(_ROOT, ignore_errors=True)


@functools.cache
def exported(family: str, frame_wh: tuple[int, int], resolution: int) -> Path:
    out = _ROOT / f"{family}-{frame_wh[0]}x{frame_wh[1]}-{resolution}"
    export_onnx(tiny_model(family), out, processing_resolution=resolution, frame_wh=frame_wh, log=lambda *_: None)
    return out


@functools.cache
def torch_predictor(family: str, resolution: int, channels_last: bool = False) -> DepthFtPredictor:
    return DepthFtPredictor.from_pretrained(tiny_model(family), device="cpu", dtype="fp32",
                                            processing_resolution=resolution, channels_last=channels_last)


def _output(prediction: Any) -> np.ndarray:
    return prediction.normals if prediction.normals is not None else prediction.relative


def _torch_stages(family: str, resolution: int, channels_last: bool) -> TorchStages:
    predictor = torch_predictor(family, resolution, channels_last)
    assert predictor.vae is not None
    return TorchStages(predictor.runner, predictor.vae, predictor.text_embedding, torch.float32)


def _check_stages(export_dir: Path, family: str, resolution: int) -> None:
    """|onnx - torch| per stage on a fresh random input of the export's size: within 1e-4, or 3x the torch
    stage's own channels_last disagreement on the same input where that is larger."""
    onnx_stages = DepthFtPredictor.from_pretrained(export_dir, device="cpu", processing_resolution=resolution).stages
    height, width = read_manifest(export_dir).processing_hw
    image = torch.rand((1, 3, height, width), generator=torch.Generator().manual_seed(7)) * 2 - 1
    results: dict[str, tuple[float, float]] = {}
    with torch.inference_mode():
        stages = _torch_stages(family, resolution, channels_last=False)
        other = _torch_stages(family, resolution, channels_last=True)
        latent = stages.encode(image)
        start = stages.runner.noise(latent)
        pred = stages.denoise(latent, start)
        cl = {"image": image, "latent": latent, "start": start, "pred": pred}
        cl = {k: v.contiguous(memory_format=torch.channels_last) for k, v in cl.items()}
        for stage, got, want, again in (
            ("encode", onnx_stages.encode(image), latent, other.encode(cl["image"])),
            ("unet", onnx_stages.denoise(latent, start), pred, other.denoise(cl["latent"], cl["start"])),
            ("decode", onnx_stages.decode(pred), stages.decode(pred), other.decode(cl["pred"])),
        ):
            results[stage] = (float((got - want).abs().max()), float((again - want).abs().max()))
    for stage, (difference, self_disagreement) in results.items():
        assert difference <= max(STAGE_TOLERANCE, 3 * self_disagreement), (stage, results)


def _check_end_to_end(family: str, frame_wh: tuple[int, int], resolution: int) -> None:
    export_dir = exported(family, frame_wh, resolution)
    rgb = random_rgb(frame_wh[1], frame_wh[0], seed=3)
    onnx_pred = DepthFtPredictor.from_pretrained(export_dir, device="cpu", processing_resolution=resolution)
    assert onnx_pred.runtime == "onnxruntime" and onnx_pred.stages.providers[0] == "CPUExecutionProvider"
    got, want = onnx_pred.predict(rgb), torch_predictor(family, resolution).predict(rgb)
    other_layout = torch_predictor(family, resolution, channels_last=True).predict(rgb)
    assert (got.space, got.processing_hw) == (want.space, want.processing_hw)
    assert _output(got).shape == _output(want).shape == (frame_wh[1], frame_wh[0], *_output(want).shape[2:])
    self_disagreement = float(np.abs(_output(other_layout) - _output(want)).max())
    difference = float(np.abs(_output(got) - _output(want)).max())
    assert difference <= max(STAGE_TOLERANCE, 3 * self_disagreement), (difference, self_disagreement)


@pytest.mark.parametrize(("family", "frame_wh", "resolution"), [
    ("e2e-ft-depth", (640, 480), 384),
    ("lotus-g-normals", (1280, 720), 128),  # 384 and 768: slow
])
def test_each_stage_and_whole_frames_equal_the_torch_path(family: str, frame_wh: tuple[int, int],
                                                          resolution: int) -> None:
    _check_stages(exported(family, frame_wh, resolution), family, resolution)
    _check_end_to_end(family, frame_wh, resolution)


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(set(FAMILIES) - set(FAST_FAMILIES)))
def test_every_family_exports_stages_equal_to_torch(family: str) -> None:
    _check_stages(exported(family, (640, 480), 384), family, 384)
    _check_end_to_end(family, (640, 480), 384)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["e2e-ft-depth", "e2e-ft-normals", "lotus-g-normals"])
@pytest.mark.parametrize("frame_wh", [(640, 480), (1280, 720)], ids=["640x480", "1280x720"])
@pytest.mark.parametrize("resolution", [384, 768])
def test_whole_frames_at_the_issue_sizes(family: str, frame_wh: tuple[int, int], resolution: int) -> None:
    _check_end_to_end(family, frame_wh, resolution)


def test_cli_export_with_external_data_and_a_four_channel_unet(tmp_path: Path) -> None:
    from depth_ft_ros.cli import main

    out = tmp_path / "export"
    assert main(["export-onnx", str(tiny_model("lotus-d-disparity")), str(out), "--size", "64x96",
                 "--external-data-bytes", "0"]) == 0
    manifest = read_manifest(out)
    for stage, entry in manifest.data["stages"].items():
        data_file = out / entry["file"]
        assert entry["external_data"] == f"{entry['file']}.data", stage
        # The weights are in the .data file, the graph file only refers to them.
        assert (out / entry["external_data"]).stat().st_size > data_file.stat().st_size
        model = onnx.load(str(data_file), load_external_data=False)
        assert any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)
    assert manifest.data["processing_hw"] == [64, 96] and manifest.processing_resolution == 96
    assert set(manifest.data["source"]["files_sha256"]) == {"unet/diffusion_pytorch_model.safetensors",
                                                            "vae/diffusion_pytorch_model.safetensors"}
    _check_stages(out, "lotus-d-disparity", 96)
    rgb = random_rgb(64, 96, seed=5)
    got = DepthFtPredictor.from_pretrained(out, processing_resolution=96).predict(rgb)
    want = torch_predictor("lotus-d-disparity", 96).predict(rgb)
    assert got.disparity is not None and got.depth is None
    assert float(np.abs(got.disparity - want.disparity).max()) <= STAGE_TOLERANCE


def _alter_weights(folder: Path, stage_file: str, factor: float) -> None:
    model = onnx.load(str(folder / stage_file))
    largest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    array = onnx.numpy_helper.to_array(largest) * np.float32(factor)
    largest.CopyFrom(onnx.numpy_helper.from_array(array.astype(np.float32), largest.name))
    onnx.save_model(model, str(folder / stage_file))


def test_probe_refuses_altered_weights_and_accepts_the_unaltered_export(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    original = exported("e2e-ft-depth", (640, 480), 384)
    DepthFtPredictor.from_pretrained(original, processing_resolution=384)  # accepted as exported
    altered = tmp_path / "altered"
    shutil.copytree(original, altered)
    _alter_weights(altered, "decoder.onnx", 1.01)
    with pytest.raises(ProbeMismatchError, match=r"stage decode differs .* by [0-9.e-]+ \(max abs\), tolerance"):
        DepthFtPredictor.from_pretrained(altered, processing_resolution=384)
    with caplog.at_level(logging.WARNING, logger="depth_ft_ros.model.onnx.runtime"):
        warned = DepthFtPredictor.from_pretrained(altered, processing_resolution=384, onnx_probe="warn")
    assert "stage decode differs" in caplog.text and "stage unet" not in caplog.text
    assert warned.predict(random_rgb(480, 640)).depth is not None


def test_export_options_that_do_not_fit_fail_with_the_name() -> None:
    export_dir = exported("e2e-ft-depth", (640, 480), 384)
    with pytest.raises(ConfigError, match=r"processing_resolution=768.* made for 384"):
        DepthFtPredictor.from_pretrained(export_dir)
    with pytest.raises(ConfigError, match="onnx_providers 'metal'"):
        DepthFtPredictor.from_pretrained(export_dir, processing_resolution=384, onnx_providers="metal")
    with pytest.raises(ConfigError, match="onnx_probe"):
        DepthFtPredictor.from_pretrained(export_dir, processing_resolution=384, onnx_probe="ignore")
    with pytest.raises(ConfigError, match="channels_last"):
        DepthFtPredictor.from_pretrained(export_dir, processing_resolution=384, channels_last=True)
    with pytest.raises(ConfigError, match="dtype=fp16"):
        DepthFtPredictor.from_pretrained(export_dir, processing_resolution=384, dtype="fp16")
    predictor = DepthFtPredictor.from_pretrained(export_dir, processing_resolution=384)
    with pytest.raises(InputError, match=r"processed at 384x216, but this ONNX export was made for 384x288"):
        predictor.predict(random_rgb(720, 1280))


def test_providers_follow_tensorrt_cuda_cpu_by_availability() -> None:
    trt, cuda, cpu = (PROVIDER_NAMES[n] for n in ("tensorrt", "cuda", "cpu"))
    everything = [cpu, cuda, trt]  # onnxruntime lists them in no particular order
    assert resolve_providers("auto", "auto", everything) == [trt, cuda, cpu]
    assert resolve_providers(None, "auto", [cpu, cuda]) == [cuda, cpu]
    assert resolve_providers("auto", "cpu", everything) == [cpu]
    assert resolve_providers("cuda,cpu", "auto", everything) == [cuda, cpu]
    with pytest.raises(ConfigError, match="tensorrt not offered"):
        resolve_providers("tensorrt", "auto", [cpu])
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        resolve_providers("auto", "cuda", [cpu])


def test_manifest_records_what_was_exported() -> None:
    import json

    export_dir = exported("e2e-ft-depth", (640, 480), 384)
    data = json.loads((export_dir / MANIFEST_NAME).read_text())
    assert (data["family"], data["space"], data["dtype"], data["processing_hw"]) == (
        "e2e-ft-depth", "depth", "fp32", [288, 384])
    assert data["exporter"]["opset"] == 17 and data["exporter"]["torch"] == torch.__version__
    from depth_ft_ros.model.onnx.runtime import sha256_file

    for entry in data["stages"].values():
        assert entry["sha256"][entry["file"]] == sha256_file(export_dir / entry["file"])
    assert set(data["probe"]["tolerances"]) == {"encode", "unet", "decode"}


def test_node_runs_an_export_given_as_depth_model(ros_graph: Any) -> None:
    """The node's depth_model takes an export folder; its depth/relative equals the torch predictor's."""
    from node_fixtures import HEIGHT, WIDTH, Probe, image_to_numpy, scene, start_node

    resolution = 160  # the scene frame's longest side: processed at 160x108, padded to 160x112
    export_dir = exported("e2e-ft-depth", (WIDTH, HEIGHT), resolution)
    node = start_node(ros_graph, depth_model=str(export_dir), normals_model="", processing_resolution=resolution,
                      alignment="off", onnx_providers="cpu")
    assert node.models is not None and node.models.depth is not None and node.models.depth.runtime == "onnxruntime"
    probe = Probe(ros_graph)
    stamp_ns = 1_700_000_000_000_000_000
    probe.send(stamp_ns)
    relative = image_to_numpy(probe.wait_output("depth/relative", stamp_ns), "f4", 1)
    want = torch_predictor("e2e-ft-depth", resolution).predict(scene().rgb).depth
    other_layout = torch_predictor("e2e-ft-depth", resolution, channels_last=True).predict(scene().rgb).depth
    self_disagreement = float(np.abs(other_layout - want).max())
    assert float(np.abs(relative - want).max()) <= max(STAGE_TOLERANCE, 3 * self_disagreement)


def test_bench_prints_both_runtimes_per_stage(capsys: pytest.CaptureFixture[str]) -> None:
    from depth_ft_ros.cli import main

    assert main(["bench", "--runtime", "onnxruntime", "--model", str(tiny_model("e2e-ft-depth")), "--resolution",
                 "64", "--width", "64", "--height", "48", "--runs", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "CPUExecutionProvider" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}
    for stage in ("encode", "unet", "decode", "total"):
        torch_ms, onnx_ms, ratio = (float(v) for v in rows[stage])
        assert torch_ms > 0 and onnx_ms > 0 and ratio == pytest.approx(onnx_ms / torch_ms, rel=0.25)  # unrounded
    assert float(out.rsplit("difference", 1)[1]) <= 1e-4


@pytest.mark.slow
def test_fp16_export_runs_in_half_precision_within_the_torch_fp16_error(tmp_path: Path) -> None:
    out = tmp_path / "fp16"
    export_onnx(tiny_model("e2e-ft-depth"), out, size_hw=(64, 96), dtype="fp16", log=lambda *_: None)
    unet = onnx.load(str(out / "unet.onnx"))
    assert {t.data_type for t in unet.graph.initializer if len(t.dims) == 4} == {onnx.TensorProto.FLOAT16}
    rgb = random_rgb(64, 96, seed=2)
    got = DepthFtPredictor.from_pretrained(out, processing_resolution=96).predict(rgb).depth
    want = torch_predictor("e2e-ft-depth", 96).predict(rgb).depth
    half = DepthFtPredictor.from_pretrained(tiny_model("e2e-ft-depth"), device="cpu", dtype="fp16",
                                            processing_resolution=96).predict(rgb).depth
    assert float(np.abs(got - want).max()) <= max(STAGE_TOLERANCE, 3 * float(np.abs(half - want).max()))
