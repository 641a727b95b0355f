"""Fine-tuning (depth_ft_ros.training): the loss, what the gradient reaches, the flip augmentation, a bit-exact
resume, the output folder, and the issue's proof on the Middlebury demo bag.

Independent references: the scale-and-shift-invariant L1 recomputed with numpy's least squares from its
definition; an analytic plane's normals (and its mirror image) for the flip; the uninterrupted run for the
resume; the node's own loader (DepthFtPredictor, replay) for the output folder; the bag's dense ground
truth for the proof.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from depth_ft_ros.errors import ConfigError
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.training.losses import (
    flip_horizontal,
    metric_to_model_space,
    normals_from_depth,
    ssi_l1_loss,
)
from depth_ft_ros.training.trainer import FinetuneOptions, Finetuner, FinetuneResult


def reference_ssi_l1(pred: np.ndarray, depth_m: np.ndarray, space: str) -> float:
    """One image, from the definition: targets (depth or 1/depth) clamped to their 2 %/98 % quantiles and
    mapped to [-1, 1] by them, least-squares scale/shift of the prediction, mean absolute residual."""
    valid = np.isfinite(depth_m)
    y = depth_m[valid] if space == "depth" else 1.0 / depth_m[valid]
    lo, hi = np.quantile(y, [0.02, 0.98])
    y = (np.clip(y, lo, hi) - lo) / (hi - lo) * 2 - 1
    p = pred[valid]
    (s, t), *_ = np.linalg.lstsq(np.stack([p, np.ones_like(p)], axis=1), y, rcond=None)
    return float(np.mean(np.abs(s * p + t - y)))


@pytest.mark.parametrize("space", ["depth", "disparity"])
def test_loss_equals_an_independent_computation(space: str) -> None:
    rng = np.random.default_rng(3)
    depth_m = rng.uniform(0.5, 8.0, size=(2, 1, 6, 7))
    depth_m[0, 0, :2, :3] = np.nan  # pixels without a LiDAR point
    depth_m[1, 0, 4:, :] = np.nan
    depth_m[0, 0, 5, 6] = 50.0  # an outlier the quantile clamp limits
    pred = rng.uniform(0.0, 1.0, size=depth_m.shape)
    expected = np.mean([reference_ssi_l1(pred[i, 0], depth_m[i, 0], space) for i in range(2)])

    d = torch.from_numpy(depth_m)
    mask = torch.isfinite(d)
    target = metric_to_model_space(torch.where(mask, d, torch.ones_like(d)), space)
    loss, images = ssi_l1_loss(torch.from_numpy(pred), target, mask)
    assert images == 2
    assert float(loss) == pytest.approx(expected, rel=1e-5)  # float32 arithmetic
    # Invariant to a positive affine change of the prediction (what the model can leave free).
    shifted, _ = ssi_l1_loss(torch.from_numpy(3.0 * pred + 0.4), target, mask)
    assert float(shifted) == pytest.approx(expected, rel=1e-5)  # float32 arithmetic


def test_loss_without_targets_is_zero_and_counted() -> None:
    pred = torch.rand(1, 1, 4, 4, requires_grad=True)
    loss, images = ssi_l1_loss(pred, torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.bool))
    assert images == 0 and float(loss.detach()) == 0.0


def plane_depth(camera: PinholeCamera, abc: tuple[float, float, float]) -> np.ndarray:
    """Depth of the plane a X + b Y + c Z = 1 seen by `camera` (optical frame)."""
    xr, yr = camera.rays()
    a, b, c = abc
    return (1.0 / (a * xr + b * yr + c)).astype(np.float32)


def test_flip_augmentation_flips_the_normals_x_sign() -> None:
    camera = PinholeCamera.from_intrinsics(fx=35.0, fy=35.0, cx=17.3, cy=14.1, width=40, height=30)
    abc = (0.12, -0.2, 0.4)
    normals = normals_from_depth(plane_depth(camera, abc), camera)
    # The plane's own normal, facing the camera (n . P = 1 > 0 on the plane, so -n faces it).
    analytic = -np.asarray(abc) / np.linalg.norm(abc)
    inner = normals[1:-1, 1:-1]
    np.testing.assert_allclose(inner, np.broadcast_to(analytic, inner.shape), atol=1e-4)

    # The mirrored image is the mirrored scene (X -> -X) through the mirrored camera (cx -> W - 1 - cx).
    mirrored_camera = PinholeCamera.from_intrinsics(fx=35.0, fy=35.0, cx=40 - 1 - 17.3, cy=14.1, width=40, height=30)
    mirrored_abc = (-abc[0], abc[1], abc[2])
    mirrored = normals_from_depth(plane_depth(mirrored_camera, mirrored_abc), mirrored_camera)
    flipped = flip_horizontal(torch.from_numpy(normals.transpose(2, 0, 1)), normals=True).numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(flipped[1:-1, 1:-1], mirrored[1:-1, 1:-1], atol=1e-4)
    # ...and the x component is what changed sign.
    assert np.sign(flipped[15, 20, 0]) == -np.sign(normals[15, 19, 0]) != 0


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from depth_ft_ros.cli.demo_bag import write_demo_bag
    from depth_ft_ros.evaluation.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("finetune")
    write_demo_bag(root / "bag", frames=8, size=(96, 72))
    return {"root": root, "bag": root / "bag", "model": make_tiny_model(root / "tiny", "e2e-ft-depth"),
            "lotus": make_tiny_model(root / "lotus", "lotus-d-disparity"),
            "normals": make_tiny_model(root / "normals", "e2e-ft-normals")}


def options(demo: dict[str, Path], out: Path, **overrides: object) -> FinetuneOptions:
    settings: dict[str, object] = dict(bags=(demo["bag"],), base=str(demo["model"]), out=out, steps=3,
                                       processing_resolution=64, lr=1e-3, warmup_steps=1, batch_size=2,
                                       grad_accum=2, checkpoint_every=2, val_frames=1, progress=False)
    settings.update(overrides)
    return FinetuneOptions(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("base", ["model", "lotus", "normals"])
def test_gradient_reaches_the_unet_and_nothing_else(demo: dict[str, Path], tmp_path: Path, base: str) -> None:
    tuner = Finetuner(options(demo, tmp_path / "out", base=str(demo[base])))
    tuner._load()
    samples, _held, _notes = tuner._data()
    loss, images = tuner.loss(samples[:2])
    assert images == 2
    loss.backward()
    unet_grads = [p.grad for p in tuner.predictor.runner.unet.parameters()]
    assert all(g is not None for g in unet_grads)
    assert sum(float(g.abs().sum()) for g in unet_grads if g is not None) > 0
    assert all(p.grad is None and not p.requires_grad for p in tuner.predictor.vae.parameters())
    assert not tuner.predictor.text_embedding.requires_grad


def unet_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))


def test_resume_continues_bit_exactly(demo: dict[str, Path], tmp_path: Path) -> None:
    straight = Finetuner(options(demo, tmp_path / "straight")).run()
    # A run stopped after its step-2 checkpoint, resumed: same weights and losses as the uninterrupted run.
    resumed_out = tmp_path / "resumed"
    (resumed_out / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "straight" / "checkpoints" / "step-0000002",
                    resumed_out / "checkpoints" / "step-0000002")
    assert len(straight.losses) == 3
    resumed = Finetuner(options(demo, resumed_out, resume=True)).run()
    assert resumed.losses == straight.losses
    a, b = unet_weights(tmp_path / "straight"), unet_weights(resumed_out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    base = unet_weights(demo["model"])
    assert any(not torch.equal(a[k], base[k]) for k in a)  # it did train


def test_output_loads_as_the_same_family_with_the_trained_unet(demo: dict[str, Path], tmp_path: Path) -> None:
    from depth_ft_ros.model.predictor import DepthFtPredictor

    out = tmp_path / "ft_normals_named_folder"  # a misleading folder name must not change the family
    result = Finetuner(options(demo, out, steps=2)).run()
    loaded = DepthFtPredictor.from_pretrained(out, device="cpu", processing_resolution=64)
    assert loaded.family == "e2e-ft-depth"
    trained = unet_weights(out)
    state = loaded.runner.unet.state_dict()
    assert all(torch.equal(state[k], trained[k]) for k in trained)
    card = (out / "README.md").read_text()
    assert str(demo["bag"]) in card and "lidar_absrel" in card and result.before and result.after


def test_bad_options_name_the_flag(demo: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--processing-resolution"):
        Finetuner(options(demo, tmp_path / "a", processing_resolution=100))
    with pytest.raises(ConfigError, match="--mixed-precision"):
        Finetuner(options(demo, tmp_path / "a", mixed_precision="fp8"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("")
    with pytest.raises(ConfigError, match="--resume"):
        Finetuner(options(demo, tmp_path / "b"))


# The proof's settings for tiny models (see BENCHMARKS.md "Fine-tuning"): lr 1e-3, not the paper's 3e-5,
# because a randomly initialised tiny UNet has to learn the task from scratch in a few hundred steps.
PROOF = dict(steps=300, processing_resolution=160, lr=1e-3, warmup_steps=30, batch_size=2, grad_accum=1,
             checkpoint_every=100, val_frames=32)


def test_cli_reports_a_bad_flag_and_a_bag_without_lidar(demo: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from depth_ft_ros.cli import main

    base = ["finetune", str(demo["bag"]), "--base", str(demo["model"]), "--out", str(tmp_path / "out")]
    assert main([*base, "--processing-resolution", "100"]) == 2
    assert "--processing-resolution must be 0 (native) or a positive multiple of 8" in capsys.readouterr().err
    assert main([*base, "--sparse-points-topic", "none", "--device", "cpu"]) == 2
    assert "fine-tuning needs metric points" in capsys.readouterr().err


def proof_run(bag: Path, model: Path, out: Path) -> FinetuneResult:
    return Finetuner(FinetuneOptions(bags=(bag,), base=str(model), out=out, progress=False,
                                     **PROOF)).run()  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.ros
def test_proof_finetuning_on_the_demo_bag_improves_held_out_absrel(demo: dict[str, Path], tmp_path: Path) -> None:
    from depth_ft_ros.cli import main
    from depth_ft_ros.cli.demo_bag import write_demo_bag

    bag = tmp_path / "bag"
    write_demo_bag(bag, frames=30, size=(160, 120))
    result = proof_run(bag, demo["model"], tmp_path / "ft")
    first, last = np.mean(result.losses[:30]), np.mean(result.losses[-30:])
    assert last < 0.8 * first
    gain = 1 - result.after["gt_absrel"] / result.before["gt_absrel"]
    assert gain >= 0.15, (result.before, result.after)
    assert result.after["no_fit"] <= result.before["no_fit"]
    # The folder loads in the node: a lossless replay with it.
    assert main(["replay", str(bag), "--out", str(tmp_path / "replay"), "--lossless", "--depth-model",
                 str(tmp_path / "ft"), "--param", "processing_resolution=160"]) == 0


def test_the_empty_prompt_embedding_can_be_saved_for_backward(tmp_path: Path) -> None:
    """At a checkpoint's first load the embedding comes from the text encoder (no cache yet): it must be an
    ordinary tensor, since fine-tuning with gradient checkpointing saves the UNet's inputs for backward (torch
    refuses inference-mode tensors there)."""
    import torch

    from depth_ft_ros.evaluation.tiny import make_tiny_model
    from depth_ft_ros.model.families.checkpoint import empty_text_embedding

    model = make_tiny_model(tmp_path / "m", "e2e-ft-depth")
    for cache in model.rglob("*empty*"):  # whatever cache the writer left: the first load computes it
        cache.unlink()
    first = empty_text_embedding(model)
    assert not first.is_inference()
    weight = torch.ones(first.shape[-1], requires_grad=True)
    torch.utils.checkpoint.checkpoint(lambda w: (first * w).sum(), weight, use_reentrant=False).backward()
    assert weight.grad is not None
