"""Public behaviour of DepthFtPredictor on tiny checkpoints: shapes, ranges, resizing, batching,
shared encoding, family detection, the text-embedding cache, tiny-model determinism."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from predictor_fixtures import cached_predictor, random_rgb, tiny_model
from skimage.data import stereo_motorcycle

from depth_ft_ros.errors import ConfigError
from depth_ft_ros.evaluation.tiny import make_tiny_model
from depth_ft_ros.model.families import FAMILIES, LEFT_UP_BACK, RIGHT_UP_BACK, to_optical_frame
from depth_ft_ros.model.families.checkpoint import EMBEDDING_FILE
from depth_ft_ros.model.families.published import PUBLISHED
from depth_ft_ros.model.predictor import DepthFtPredictor, Prediction

STAGES = {"preprocess", "encode", "unet", "decode", "postprocess", "total"}


@pytest.fixture(scope="module")
def motorcycle() -> np.ndarray:
    return stereo_motorcycle()[0]  # Middlebury 2014 Motorcycle, 500x741 RGB uint8


@pytest.mark.parametrize("family", ["e2e-ft-depth", "e2e-ft-normals"])
def test_middlebury_frame_shapes_ranges_and_resize_back(family, motorcycle):
    full = cached_predictor(family).predict(motorcycle)
    low = cached_predictor(family, match_input_resolution=False).predict(motorcycle)
    assert full.processing_hw == (500 * 768 // 741, 768) == low.processing_hw
    assert set(full.timings_ms) == STAGES and all(v >= 0 for v in full.timings_ms.values())
    assert full.timings_ms["total"] >= full.timings_ms["unet"] > 0
    if family.endswith("depth"):
        assert full.depth.shape == (500, 741) and full.depth.dtype == np.float32
        assert full.normals is None and full.disparity is None and full.space == "depth"
        assert full.depth.min() >= 0.0 and full.depth.max() <= 1.0
        assert full.depth.std() > 0  # not a constant map
        low_map = torch.from_numpy(low.depth)[None, None]
        expected = F.interpolate(low_map, (500, 741), mode="bilinear", align_corners=False)[0, 0].numpy()
        np.testing.assert_allclose(full.depth, expected, atol=1e-6)
    else:
        assert full.normals.shape == (500, 741, 3) and full.normals.dtype == np.float32
        assert full.depth is None and full.space is None and full.relative is None
        np.testing.assert_allclose(np.linalg.norm(full.normals, axis=-1), 1.0, atol=1e-5)
        # 768x518 -> 741x500 shrinks: the E2E-FT authors resize normals back with antialiasing
        # (Marigold/marigold/marigold_pipeline.py, resize(..., antialias=True)); unit length again after.
        # They resize vectors divided by (norm + 1e-5), `low` holds unit vectors: short decoded vectors
        # weigh a little differently: 90 % of the components within 1e-5, all within 3e-3; plain
        # bilinear would be 1e-2 off for 10 % of them.
        low_map = torch.from_numpy(low.normals).permute(2, 0, 1)[None]
        resized = F.interpolate(low_map, (500, 741), mode="bilinear", align_corners=False, antialias=True)
        expected = (resized / resized.norm(dim=1, keepdim=True)).permute(0, 2, 3, 1)[0].numpy()
        assert np.quantile(np.abs(full.normals - expected), 0.9) < 1e-5
        np.testing.assert_allclose(full.normals, expected, atol=3e-3)
        plain = F.interpolate(low_map, (500, 741), mode="bilinear", align_corners=False)
        plain = (plain / plain.norm(dim=1, keepdim=True)).permute(0, 2, 3, 1)[0].numpy()
        assert np.quantile(np.abs(full.normals - plain), 0.9) > 1e-3  # not diffusers' plain bilinear


def test_relative_property_and_disparity_space():
    rgb = random_rgb(40, 56)
    disparity = cached_predictor("lotus-g-disparity", processing_resolution=0).predict(rgb)
    assert disparity.space == "disparity" and disparity.depth is None
    assert disparity.relative is disparity.disparity
    depth = Prediction(depth=np.zeros((2, 2), np.float32), space="depth")
    assert depth.relative is depth.depth


def test_predict_batch_matches_single_frames_and_keeps_order():
    predictor = cached_predictor("e2e-ft-depth", processing_resolution=64)
    frames = [random_rgb(48, 64, seed=1), random_rgb(30, 40, seed=2), random_rgb(48, 64, seed=3)]
    batch = predictor.predict_batch(frames)
    assert [p.depth.shape for p in batch] == [(48, 64), (30, 40), (48, 64)]
    for frame, batched in zip(frames, batch, strict=True):
        np.testing.assert_allclose(batched.depth, predictor.predict(frame).depth, atol=1e-5)
    assert predictor.predict_batch([]) == []


def test_depth_and_normals_share_one_encoding():
    depth_pred = cached_predictor("e2e-ft-depth", processing_resolution=96)
    normals_pred = cached_predictor("e2e-ft-normals", processing_resolution=96)
    assert depth_pred.vae_key == normals_pred.vae_key  # same seed -> byte-identical tiny VAE
    rgb = random_rgb(72, 96, seed=5)
    encoded = depth_pred.encode(rgb)
    first = normals_pred.predict(rgb, encoded=encoded)
    np.testing.assert_allclose(first.normals, normals_pred.predict(rgb).normals, atol=1e-6)
    # The encoding's cost is reported once, by its first user, and counted in that user's total.
    assert first.timings_ms["encode"] == encoded.timings_ms["encode"] > 0
    assert first.timings_ms["total"] >= first.timings_ms["encode"] + first.timings_ms["unet"]
    second = depth_pred.predict(rgb, encoded=encoded)
    assert second.timings_ms["encode"] == 0.0 and second.timings_ms["preprocess"] == 0.0
    np.testing.assert_allclose(second.depth, depth_pred.predict(rgb).depth)


def test_encoding_from_another_vae_or_resolution_is_refused():
    rgb = random_rgb(32, 48)
    other_vae = DepthFtPredictor.from_pretrained(tiny_model("e2e-ft-normals", seed=1), processing_resolution=96)
    depth_pred = cached_predictor("e2e-ft-depth", processing_resolution=96)
    assert other_vae.vae_key != depth_pred.vae_key
    with pytest.raises(ConfigError, match="different VAE"):
        other_vae.predict(rgb, encoded=depth_pred.encode(rgb))
    with pytest.raises(ConfigError, match="processing_resolution"):
        cached_predictor("e2e-ft-normals", processing_resolution=64).predict(rgb, encoded=depth_pred.encode(rgb))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_detected_from_the_checkpoint_itself(family, tmp_path):
    # Copy to a neutral folder name: only the configs and the model card may give the family away.
    folder = shutil.copytree(tiny_model(family), tmp_path / "checkpoint")
    predictor = DepthFtPredictor.from_pretrained(folder, processing_resolution=32)
    spec = FAMILIES[family]
    assert (predictor.family, predictor.task, predictor.space) == (family, spec.task, spec.space)
    assert predictor.device == torch.device("cpu") and predictor.dtype == torch.float32  # "auto" here
    assert predictor.model_id == str(folder.resolve())


def test_family_from_folder_name_and_override(tmp_path):
    folder = shutil.copytree(tiny_model("e2e-ft-normals"), tmp_path / "my-e2e-ft-normals")
    (folder / "README.md").unlink()
    assert DepthFtPredictor.from_pretrained(folder).family == "e2e-ft-normals"
    anonymous = shutil.copytree(folder, tmp_path / "checkpoint")
    with pytest.raises(ConfigError, match="pass family="):
        DepthFtPredictor.from_pretrained(anonymous)
    assert DepthFtPredictor.from_pretrained(anonymous, family="marigold-depth").family == "marigold-depth"
    with pytest.raises(ConfigError, match="projection class embedding"):
        DepthFtPredictor.from_pretrained(anonymous, family="lotus-g-depth")


def test_hub_id_resolved_from_the_offline_cache(tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--marigold-e2e-ft-depth"
    no_card = shutil.ignore_patterns("*.md", EMBEDDING_FILE)
    shutil.copytree(tiny_model("e2e-ft-depth"), repo / "snapshots" / commit, ignore=no_card)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    predictor = DepthFtPredictor.from_pretrained("someone/marigold-e2e-ft-depth", processing_resolution=32)
    assert predictor.model_id == "someone/marigold-e2e-ft-depth"
    assert predictor.family == "e2e-ft-depth"  # from the repo id: the card was left out
    # Hub-cache folders are left untouched; the embedding goes to the user cache instead.
    assert not (repo / "snapshots" / commit / EMBEDDING_FILE).exists()
    assert list((tmp_path / "cache" / "depth_ft_ros" / "empty_text_embedding").glob("*.safetensors"))


def test_empty_text_embedding_cached_beside_the_weights(tmp_path):
    folder = shutil.copytree(tiny_model("lotus-d-depth"), tmp_path / "lotus-d-depth")
    (folder / EMBEDDING_FILE).unlink(missing_ok=True)
    rgb = random_rgb(32, 32)
    first = DepthFtPredictor.from_pretrained(folder, processing_resolution=0).predict(rgb).depth
    assert (folder / EMBEDDING_FILE).is_file()
    # The text encoder is only needed once: without it the cached embedding is used.
    shutil.rmtree(folder / "text_encoder")
    shutil.rmtree(folder / "tokenizer")
    second = DepthFtPredictor.from_pretrained(folder, processing_resolution=0).predict(rgb).depth
    np.testing.assert_array_equal(first, second)


def test_stale_embedding_cache_is_recomputed(tmp_path):
    from safetensors import safe_open

    folder = shutil.copytree(tiny_model("e2e-ft-depth"), tmp_path / "e2e-ft-depth")
    DepthFtPredictor.from_pretrained(folder)
    with safe_open(str(folder / EMBEDDING_FILE), framework="pt") as handle:
        stamp = handle.metadata()["text_encoder"]
    weights = folder / "text_encoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # same content, new mtime: a changed text encoder
    DepthFtPredictor.from_pretrained(folder)
    with safe_open(str(folder / EMBEDDING_FILE), framework="pt") as handle:
        assert handle.metadata()["text_encoder"] != stamp


def test_tiny_model_is_deterministic_and_has_the_real_layout(tmp_path):
    first = make_tiny_model(tmp_path / "a", "lotus-g-normals", seed=3)
    again = make_tiny_model(tmp_path / "b", "lotus-g-normals", seed=3)
    other = make_tiny_model(tmp_path / "c", "lotus-g-normals", seed=4)
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (first / weights).read_bytes() == (again / weights).read_bytes()
    assert (first / weights).read_bytes() != (other / weights).read_bytes()
    for name in ("model_index.json", "unet/config.json", "vae/config.json", "scheduler/scheduler_config.json",
                 "text_encoder/config.json", "tokenizer/vocab.json", "tokenizer/merges.txt"):
        assert (first / name).is_file(), name
    unet = json.loads((first / "unet/config.json").read_text())
    assert unet["class_embed_type"] == "projection" and unet["projection_class_embeddings_input_dim"] == 4
    assert unet["in_channels"] == 8
    scheduler = json.loads((first / "scheduler/scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "sample" and scheduler["beta_schedule"] == "scaled_linear"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tiny_model_has_the_published_configs(family):
    folder = tiny_model(family)
    record = PUBLISHED[family]
    scheduler = json.loads((folder / "scheduler/scheduler_config.json").read_text())
    assert scheduler["_class_name"] == record.scheduler_class
    for key, value in record.scheduler_config().items():
        assert scheduler[key] == value, key
    unet = json.loads((folder / "unet/config.json").read_text())
    # SD2's UNet: 4 levels, 3 down-samplers (8x), so latent sizes need not be multiples of 8.
    assert len(unet["down_block_types"]) == len(unet["up_block_types"]) == 4
    assert unet["sample_size"] == record.unet_sample_size
    assert all(unet[key] == value for key, value in record.unet_extra.items())
    vae = json.loads((folder / "vae/config.json").read_text())
    assert vae["scaling_factor"] == 0.18215 and len(vae["block_out_channels"]) == 4
    index = json.loads((folder / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", record.scheduler_class]
    assert all(index[key] == value for key, value in record.model_index.items())


def test_tiny_lotus_d_disparity_has_the_published_epsilon_scheduler():
    # jingheya/lotus-depth-d-v2-0-disparity ships SD2-base's PNDMScheduler config, prediction_type epsilon.
    scheduler = json.loads((tiny_model("lotus-d-disparity") / "scheduler/scheduler_config.json").read_text())
    assert (scheduler["_class_name"], scheduler["prediction_type"]) == ("PNDMScheduler", "epsilon")


def test_normals_frames_map_physical_directions_to_the_optical_frame():
    def convert(vector, frame):
        return to_optical_frame(torch.tensor(vector, dtype=torch.float32).view(1, 3, 1, 1), frame).flatten().tolist()

    # E2E-FT / Lotus: +X left, +Y up, +Z toward the camera. Optical: x right, y down, z forward.
    assert convert([1, 0, 0], LEFT_UP_BACK) == [-1, 0, 0]  # "left" is -x optical
    assert convert([0, 1, 0], LEFT_UP_BACK) == [0, -1, 0]  # "up" is -y optical
    assert convert([0, 0, 1], LEFT_UP_BACK) == [0, 0, -1]  # facing the camera is -z optical
    # Marigold: X right, Y up, Z toward the viewer.
    assert convert([1, 0, 0], RIGHT_UP_BACK) == [1, 0, 0]
    assert convert([0, 1, 0], RIGHT_UP_BACK) == [0, -1, 0]
    assert convert([0, 0, 1], RIGHT_UP_BACK) == [0, 0, -1]


def test_close_frees_the_predictor():
    predictor = DepthFtPredictor.from_pretrained(tiny_model("e2e-ft-depth"), processing_resolution=32)
    predictor.close()
    predictor.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        predictor.predict(random_rgb(16, 16))
