"""Errors a person can act on: what is wrong, and what to do."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from predictor_fixtures import cached_predictor, tiny_model

from depth_ft_ros.errors import ConfigError, InputError, ModelLoadError
from depth_ft_ros.model.predictor import DepthFtPredictor


def test_missing_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        DepthFtPredictor.from_pretrained(tmp_path / "nowhere" / "model")


@pytest.mark.parametrize(
    "missing",
    ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
     "vae/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"],
)
def test_missing_file_is_named(tmp_path, missing):
    folder = shutil.copytree(tiny_model("e2e-ft-depth"), tmp_path / "e2e-ft-depth")
    (folder / missing).unlink()
    with pytest.raises(ModelLoadError, match=missing.replace(".", r"\.")):
        DepthFtPredictor.from_pretrained(folder)


def test_missing_text_encoder_without_cached_embedding(tmp_path):
    folder = shutil.copytree(tiny_model("e2e-ft-depth"), tmp_path / "e2e-ft-depth")
    (folder / "empty_text_embedding.safetensors").unlink(missing_ok=True)
    shutil.rmtree(folder / "text_encoder")
    with pytest.raises(ModelLoadError, match=r"text_encoder/model\.safetensors"):
        DepthFtPredictor.from_pretrained(folder)


def test_unknown_family_lists_the_families():
    with pytest.raises(ConfigError, match="unknown model family 'depth-anything'") as info:
        DepthFtPredictor.from_pretrained(tiny_model("e2e-ft-depth"), family="depth-anything")
    for name in ("e2e-ft-depth", "e2e-ft-normals", "marigold-depth", "lotus-g-disparity", "lotus-d-normals"):
        assert name in str(info.value)


def test_not_a_depth_checkpoint(tmp_path):
    import json

    folder = shutil.copytree(tiny_model("e2e-ft-depth"), tmp_path / "sd")
    config = json.loads((folder / "unet/config.json").read_text())
    (folder / "unet/config.json").write_text(json.dumps(config | {"in_channels": 4}))
    with pytest.raises(ModelLoadError, match="in_channels=4"):
        DepthFtPredictor.from_pretrained(folder)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"dtype": "fp64"}, "dtype must be"),
        ({"device": "tpu"}, "device must be"),
        ({"processing_resolution": -1}, "processing_resolution"),
        ({"noise": "pyramid"}, "noise must be"),
        ({"num_inference_steps": 2}, "single-step"),
        ({"attention": "flash"}, "attention must be"),
        ({"pad_multiple": 12}, "pad_multiple"),
        ({"normals_frame": "up-left"}, "normals_frame"),
        ({"ensemble_size": 3}, "unknown predictor option"),
    ],
)
def test_bad_settings(options, match):
    with pytest.raises(ConfigError, match=match):
        DepthFtPredictor.from_pretrained(tiny_model("e2e-ft-depth"), **options)


def test_noise_on_a_family_without_a_noise_input():
    with pytest.raises(ConfigError, match="lotus-d-depth has no noise input; noise must be unset or zeros"):
        DepthFtPredictor.from_pretrained(tiny_model("lotus-d-depth"), noise="gaussian")


def test_marigold_steps_range():
    with pytest.raises(ConfigError, match="1-4"):
        DepthFtPredictor.from_pretrained(tiny_model("marigold-depth"), num_inference_steps=10)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_asked_for_but_absent():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        DepthFtPredictor.from_pretrained(tiny_model("e2e-ft-depth"), device="cuda")


def test_offline_hub_id_not_in_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        DepthFtPredictor.from_pretrained("GonzaloMG/marigold-e2e-ft-depth")
    message = str(info.value)
    assert "GonzaloMG/marigold-e2e-ft-depth" in message
    assert "depth-ft-ros fetch-model GonzaloMG/marigold-e2e-ft-depth" in message


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (np.zeros((32, 32, 3), np.float32), "uint8"),
        (np.zeros((32, 32), np.uint8), "HxWx3"),
        (np.zeros((32, 32, 4), np.uint8), "HxWx3"),
        (np.zeros((0, 32, 3), np.uint8), "empty"),
        ([[0, 0, 0]], "numpy array"),
    ],
)
def test_wrong_input(frame, match):
    predictor = cached_predictor("e2e-ft-depth", processing_resolution=32)
    with pytest.raises(InputError, match=match):
        predictor.predict(frame)
    with pytest.raises(InputError, match=match):
        predictor.predict_batch([np.zeros((8, 8, 3), np.uint8), frame])


def test_encoded_frame_of_another_size():
    predictor = cached_predictor("e2e-ft-depth", processing_resolution=32)
    encoded = predictor.encode(np.zeros((16, 24, 3), np.uint8))
    with pytest.raises(InputError, match="encoded frame"):
        predictor.predict(np.zeros((16, 16, 3), np.uint8), encoded=encoded)
