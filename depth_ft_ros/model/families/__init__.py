"""Model families: the registry, and the factory that builds the runner for one.

    e2e-ft-depth, e2e-ft-normals          marigold.py (1 step at t=999, zeros)
    marigold-depth, marigold-normals      marigold.py (1-4 trailing steps through the scheduler,
                                                       fixed-seed Gaussian start)
    lotus-{g,d}-{depth,disparity,normals} lotus.py    (class-label task switcher, x0 = output;
                                                       Lotus-G: fixed-seed Gaussian noise latent)

Noise (8-channel UNets): each family defaults to what it was trained with (FamilySpec.default_noise);
`noise=` overrides it, see base.NOISE_KINDS.

Which family a checkpoint is comes from its own configs (see detect.py) unless `family=` says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from depth_ft_ros.errors import ConfigError
from depth_ft_ros.model.families.base import (
    LEFT_UP_BACK,
    NOISE_KINDS,
    NORMALS_FRAMES,
    RIGHT_UP_BACK,
    FamilyRunner,
    FamilySpec,
    NoiseLatents,
    NormalsFrame,
    to_optical_frame,
)

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel


def _marigold_arch(base: str, task: str) -> FamilySpec:
    e2e_ft = base == "e2e-ft"
    return FamilySpec(
        name=f"{base}-{task}",
        arch="marigold",
        task=task,
        space="depth" if task == "depth" else None,
        unet_in_channels=8,
        normals_frame=(LEFT_UP_BACK if e2e_ft else RIGHT_UP_BACK) if task == "normals" else None,
        single_step=e2e_ft,
        summary=f"E2E-FT {task}: 1 step at t=999, zero noise" if e2e_ft
        else f"original Marigold {task}: 1-4 trailing steps through the scheduler",
        # E2E-FT was fine-tuned with zero noise; Marigold was trained (and diffusers runs it) with
        # Gaussian noise: a fixed-seed latent keeps it in distribution and deterministic.
        default_noise="zeros" if e2e_ft else "gaussian",
    )


def _lotus(variant: str, output: str) -> FamilySpec:
    task = "normals" if output == "normals" else "depth"
    return FamilySpec(
        name=f"lotus-{variant}-{output}",
        arch="lotus",
        task=task,
        space=None if task == "normals" else output,
        unet_in_channels=8 if variant == "g" else 4,
        normals_frame=LEFT_UP_BACK if task == "normals" else None,
        single_step=True,
        summary=f"Lotus-{variant.upper()} {output}: x0 prediction at t=999 with the task switcher",
        # Lotus-G was trained with Gaussian noise at t=999 (zeros are outside its training inputs);
        # Lotus-D has no noise input.
        default_noise="gaussian" if variant == "g" else "zeros",
    )


FAMILIES: dict[str, FamilySpec] = {
    spec.name: spec
    for spec in (
        *(_marigold_arch(base, task) for base in ("e2e-ft", "marigold") for task in ("depth", "normals")),
        *(_lotus(variant, output) for variant in ("g", "d") for output in ("depth", "disparity", "normals")),
    )
}

def get_family(name: str) -> FamilySpec:
    """The spec for a family name; ConfigError listing the families when unknown."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"unknown model family {name!r}; known families: {', '.join(FAMILIES)}") from None


def get_normals_frame(name: str) -> NormalsFrame:
    try:
        return NORMALS_FRAMES[name]
    except KeyError:
        raise ConfigError(f"unknown normals_frame {name!r}; known frames: {', '.join(NORMALS_FRAMES)}") from None


MAX_FEW_STEPS = 4


def resolve_steps(spec: FamilySpec, num_inference_steps: int | None, model_index: dict[str, Any]) -> int:
    """Denoising steps for `spec`: 1 for single-step families, else 1-MAX_FEW_STEPS."""
    if spec.single_step:
        if num_inference_steps not in (None, 1):
            raise ConfigError(
                f"family {spec.name} is a single-step model; num_inference_steps must be 1 or unset, "
                f"got {num_inference_steps}"
            )
        return 1
    steps = num_inference_steps
    if steps is None:  # the checkpoint's own default, capped to the few-step range
        steps = min(int(model_index.get("default_denoising_steps") or 1), MAX_FEW_STEPS)
    if not isinstance(steps, int) or not 1 <= steps <= MAX_FEW_STEPS:
        raise ConfigError(f"num_inference_steps must be 1-{MAX_FEW_STEPS} for {spec.name}, got {steps!r}")
    return steps


def check_noise(noise: str | None) -> None:
    if noise is not None and noise not in NOISE_KINDS:
        raise ConfigError(f"noise must be one of {', '.join(NOISE_KINDS)} (or unset), got {noise!r}")


def resolve_noise(spec: FamilySpec, noise: str | None) -> str:
    """The noise kind for `spec`: the family's default unless `noise` says otherwise."""
    check_noise(noise)
    if noise is None:
        return spec.default_noise
    if spec.unet_in_channels != 8 and noise != "zeros":
        raise ConfigError(f"family {spec.name} has no noise input; noise must be unset or zeros, got {noise!r}")
    return noise


def make_runner(
    spec: FamilySpec,
    unet: UNet2DConditionModel,
    scheduler_config: dict[str, Any],
    model_index: dict[str, Any],
    *,
    num_inference_steps: int,
    noise: str,
    seed: int,
    e2e_ft_readout: bool = False,
) -> FamilyRunner:
    """Build the runner for `spec` from resolved settings: num_inference_steps from resolve_steps, noise from
    resolve_noise (the loader resolves and checks them once, before any weights load).

    e2e_ft_readout: decode normals as the E2E-FT authors do (Marigold-architecture checkpoints trained
    with their code); see marigold.py.
    """
    latents = NoiseLatents(noise, seed)
    if spec.arch == "lotus":
        from depth_ft_ros.model.families.lotus import LotusRunner

        return LotusRunner(spec, unet, scheduler_config, noise=latents)

    from depth_ft_ros.model.families.marigold import MarigoldRunner

    return MarigoldRunner(
        spec,
        unet,
        scheduler_config,
        num_inference_steps=num_inference_steps,
        noise=latents,
        use_full_z_range=bool(model_index.get("use_full_z_range", True)),
        e2e_ft_readout=e2e_ft_readout or spec.name.startswith("e2e-ft"),
    )


__all__ = [
    "FAMILIES",
    "LEFT_UP_BACK",
    "MAX_FEW_STEPS",
    "NOISE_KINDS",
    "NORMALS_FRAMES",
    "RIGHT_UP_BACK",
    "FamilyRunner",
    "FamilySpec",
    "NormalsFrame",
    "check_noise",
    "get_family",
    "get_normals_frame",
    "make_runner",
    "resolve_noise",
    "resolve_steps",
    "to_optical_frame",
]
