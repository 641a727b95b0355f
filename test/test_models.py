"""Models: one copy of each network (one VAE when both checkpoints carry the same), the frames of several cameras
through them, batched.

The reference for every frame is the predictor run on that frame alone (`predict`), which the predictor tests hold
equal to diffusers' pipelines and the authors' read-out."""

from __future__ import annotations

import filecmp
import gc
import shutil
from pathlib import Path

import numpy as np
import pytest
from diffusers import AutoencoderKL
from predictor_fixtures import cached_predictor, random_rgb, tiny_model, weight_file_bytes

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.errors import InputError
from depth_ft_ros.model.networks import Models
from depth_ft_ros.model.predictor import DepthFtPredictor


def _vae_objects() -> int:
    return sum(type(obj) is AutoencoderKL for obj in gc.get_objects())


def _load(depth_model: Path, normals_model: Path) -> Models:
    return Models.load(NodeConfig(depth_model=str(depth_model), normals_model=str(normals_model), device="cpu",
                                  dtype="fp32", processing_resolution=64).validate())


@pytest.fixture(scope="module")
def models() -> Models:
    return _load(tiny_model("e2e-ft-depth"), tiny_model("e2e-ft-normals"))


def test_frames_of_one_processing_size_share_a_forward_and_equal_each_frame_alone(models: Models) -> None:
    # 64x48 and 128x96 are both seen at 64x48; 40x40 at 64x64: two forwards.
    frames = [random_rgb(48, 64, seed=1), random_rgb(96, 128, seed=2), random_rgb(40, 40, seed=3),
              random_rgb(48, 64, seed=4)]
    out = models.predict(frames, [True] * 4)
    assert [o.batch_size for o in out] == [3, 3, 1, 3]
    assert models.depth is not None and models.normals is not None
    for frame, o in zip(frames, out, strict=True):
        assert o.error is None and o.relative is not None and o.normals is not None
        assert o.relative.shape == frame.shape[:2] and o.normals.shape == frame.shape
        np.testing.assert_allclose(o.relative, models.depth.predict(frame).depth, atol=1e-5)
        # Unit normals: a batch's other kernels change the last float bits, amplified where x, y ~ 0 before
        # normalisation (as in the predictor's own read-out tests).
        alone = models.normals.predict(frame).normals
        assert alone is not None
        np.testing.assert_allclose(o.normals, alone, atol=1e-3)
        assert np.mean(np.abs(o.normals - alone) <= 1e-4) > 0.999
        # Encoded once for both networks: the normals report no encode of their own.
        assert o.timings_ms["depth.encode"] > 0 and o.timings_ms["normals.encode"] == 0


def test_max_batch_and_normals_wanted_per_frame(models: Models) -> None:
    frames = [random_rgb(48, 64, seed=s) for s in range(3)]
    out = models.predict(frames, [True, False, True], max_batch=1)
    assert [o.batch_size for o in out] == [1, 1, 1]
    assert out[1].normals is None and out[0].normals is not None and out[2].normals is not None
    out = models.predict(frames, [False] * 3, max_batch=2)
    assert [o.batch_size for o in out] == [2, 2, 1]


def test_a_frame_the_network_refuses_fails_alone(models: Models) -> None:
    frames = [random_rgb(48, 64, seed=1), np.zeros((48, 64), np.uint8), random_rgb(48, 64, seed=2)]
    out = models.predict(frames, [False] * 3)
    assert isinstance(out[1].error, InputError) and "HxWx3" in str(out[1].error)
    assert models.depth is not None
    for i in (0, 2):
        assert out[i].error is None
        np.testing.assert_allclose(out[i].relative, models.depth.predict(frames[i]).depth, atol=1e-5)


def test_one_vae_in_memory_when_both_checkpoints_carry_the_same_weights(tmp_path: Path) -> None:
    # The tiny depth and normals checkpoints of one seed hold byte-identical VAEs (as the published E2E-FT and Lotus
    # pairs); a copy in another folder has another path but the same content.
    depth_dir, normals_dir = tiny_model("e2e-ft-depth"), shutil.copytree(tiny_model("e2e-ft-normals"), tmp_path / "n")
    assert filecmp.cmp(depth_dir / "vae/diffusion_pytorch_model.safetensors",
                       normals_dir / "vae/diffusion_pytorch_model.safetensors", shallow=False)
    gc.collect()
    before = _vae_objects()
    models = _load(depth_dir, normals_dir)
    gc.collect()
    assert _vae_objects() - before == 1  # one AutoencoderKL object was built for the two checkpoints
    assert models.depth is not None and models.normals is not None
    assert models.depth.vae is models.normals.vae
    assert models.shared_vae and models.shared_encoder
    assert models.describe()["shared_vae"] == "true"
    # Memory held against the bytes of the weight files: two UNets and one VAE, nothing counted twice or left out.
    expected = (weight_file_bytes(depth_dir, "unet") + weight_file_bytes(normals_dir, "unet")
                + weight_file_bytes(depth_dir, "vae"))
    assert models.parameter_bytes() == expected
    # The shared VAE still gives what the normals checkpoint alone gives.
    frame = random_rgb(48, 64, seed=7)
    alone = cached_predictor("e2e-ft-normals", processing_resolution=64).predict(frame).normals
    np.testing.assert_allclose(models.normals.predict(frame).normals, alone, atol=1e-5)
    models.close()


def test_two_vaes_when_the_weights_differ() -> None:
    depth_dir, normals_dir = tiny_model("e2e-ft-depth"), tiny_model("e2e-ft-normals", seed=1)
    gc.collect()
    before = _vae_objects()
    models = _load(depth_dir, normals_dir)
    gc.collect()
    assert _vae_objects() - before == 2
    assert models.depth is not None and models.normals is not None and models.depth.vae is not models.normals.vae
    assert not models.shared_vae and not models.shared_encoder
    assert models.describe()["shared_vae"] == models.describe()["shared_encoder"] == "false"
    expected = sum(weight_file_bytes(d, c) for d in (depth_dir, normals_dir) for c in ("unet", "vae"))
    assert models.parameter_bytes() == expected
    models.close()


def test_frames_are_grouped_once_and_each_group_runs_once_per_network(models: Models,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    original = DepthFtPredictor.predict_group

    def predict_group(self: DepthFtPredictor, frames: list[np.ndarray], encoded: object = None) -> object:
        calls.append((self.task, len(frames)))
        return original(self, frames, encoded)  # type: ignore[arg-type]

    def regroup(*args: object, **kwargs: object) -> None:
        raise AssertionError("Models.predict grouped the frames already")

    monkeypatch.setattr(DepthFtPredictor, "predict_group", predict_group)
    monkeypatch.setattr(DepthFtPredictor, "predict_batch", regroup)
    frames = [random_rgb(48, 64, seed=1), random_rgb(96, 128, seed=2), random_rgb(40, 40, seed=3)]
    models.predict(frames, [True] * 3)
    assert sorted(calls) == [("depth", 1), ("depth", 2), ("normals", 1), ("normals", 2)]


def test_steps_and_noise_are_resolved_once_per_load(monkeypatch: pytest.MonkeyPatch) -> None:
    import depth_ft_ros.model.families as families
    import depth_ft_ros.model.predictor as predictor_module

    counts = {"resolve_steps": 0, "resolve_noise": 0}
    for name in counts:
        original = getattr(families, name)

        def counted(*args: object, _original: object = original, _name: str = name) -> object:
            counts[_name] += 1
            return _original(*args)  # type: ignore[operator]

        monkeypatch.setattr(families, name, counted)  # what the runner factory would call
        monkeypatch.setattr(predictor_module, name, counted)  # what the loader calls
    predictor = DepthFtPredictor.from_pretrained(tiny_model("marigold-depth"), processing_resolution=32,
                                                 num_inference_steps=2)
    assert counts == {"resolve_steps": 1, "resolve_noise": 1}
    assert predictor.num_inference_steps == predictor.runner.num_inference_steps == 2  # type: ignore[attr-defined]
    assert predictor.runner.noise.kind == "gaussian"  # the family's default, resolved by the loader
