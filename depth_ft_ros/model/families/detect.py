"""Which family a checkpoint belongs to, read from the checkpoint itself.

Architecture comes from unet/config.json: class_embed_type "projection" (4-d input) is Lotus, with
8 input channels Lotus-G and 4 Lotus-D; otherwise 8 input channels is the Marigold architecture.
The output (depth / disparity / normals) comes, in this order, from model_index.json (`_class_name`
MarigoldDepthPipeline / MarigoldNormalsPipeline, or `prediction_type`), then from name hints: the Hub
id or folder name, then the README model card's front matter and title. E2E-FT and original Marigold
share config files; "e2e-ft" in a hint tells them apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depth_ft_ros.errors import ConfigError, ModelLoadError
from depth_ft_ros.model.families import FAMILIES, LEFT_UP_BACK, FamilySpec, NormalsFrame, get_family

_E2E_FT = re.compile(r"e2e[-_]?ft")
_CLASS_TASK = {"MarigoldDepthPipeline": "depth", "MarigoldNormalsPipeline": "normals"}


@dataclass(frozen=True)
class CheckpointConfigs:
    model_index: dict[str, Any]
    unet: dict[str, Any]
    scheduler: dict[str, Any]
    hints: tuple[str, ...]  # lower-case name hints, most specific first


def name_hints(hub_id: str | None, model_dir: Path) -> tuple[str, ...]:
    """Hub id or folder name (an HF cache path yields its repo id), then the README card."""
    hints = [hub_id.lower()] if hub_id else []
    for part in reversed(model_dir.resolve().parts):
        if part.startswith("models--"):  # .../models--org--name/snapshots/<commit>
            hints.append(part[len("models--"):].replace("--", "/").lower())
            break
    else:
        hints.append(model_dir.name.lower())
    readme = model_dir / "README.md"
    if readme.is_file():
        hints.append(_card_summary(readme.read_text(encoding="utf-8", errors="replace")[:65536]))
    return tuple(h for h in hints if h)


def _card_summary(text: str) -> str:
    """Front matter (tags, base_model, ...) and the first heading of a model card, lower-cased."""
    lines = text.splitlines()
    front: list[str] = []
    if lines and lines[0].strip() == "---":
        for line in lines[1:]:
            if line.strip() == "---":
                break
            front.append(line)
    title = next((line for line in lines if line.startswith("# ")), "")
    return " ".join([*front, title]).lower()


def _output_from_text(text: str) -> str | None:
    """depth / disparity / normals named in one hint, or None if absent or ambiguous."""
    normal = "normal" in text
    disparity = "disparity" in text
    depth = "depth" in text
    if normal and not (depth or disparity):
        return "normals"
    if disparity and not normal:  # "lotus-depth-g-v2-1-disparity" is disparity
        return "disparity"
    if depth and not normal:
        return "depth"
    return None


def _output(configs: CheckpointConfigs) -> str | None:
    index = configs.model_index
    if index.get("_class_name") in _CLASS_TASK:
        return _CLASS_TASK[index["_class_name"]]
    if index.get("prediction_type") in ("depth", "normals", "disparity"):
        return str(index["prediction_type"])
    for hint in configs.hints:
        found = _output_from_text(hint)
        if found:
            return found
    return None


def describe_unet(unet: dict[str, Any]) -> str:
    return (
        f"unet in_channels={unet.get('in_channels')}, class_embed_type={unet.get('class_embed_type')}, "
        f"projection_class_embeddings_input_dim={unet.get('projection_class_embeddings_input_dim')}"
    )


def detect_family(configs: CheckpointConfigs) -> FamilySpec:
    unet = configs.unet
    in_channels = unet.get("in_channels")
    lotus = unet.get("class_embed_type") == "projection"
    output = _output(configs)
    where = f"{describe_unet(unet)}; hints {list(configs.hints)[:2]}"
    if lotus:
        if unet.get("projection_class_embeddings_input_dim") != 4 or in_channels not in (4, 8):
            raise ModelLoadError(f"not a Lotus checkpoint this node can run ({where})")
        variant = "g" if in_channels == 8 else "d"
        base = f"lotus-{variant}"
    elif in_channels == 8:
        if output == "disparity":
            output = None  # no Marigold-architecture disparity checkpoints exist
        base = "e2e-ft" if any(_E2E_FT.search(h) for h in configs.hints) else "marigold"
    else:
        raise ModelLoadError(
            f"not a depth/normals checkpoint: expected an 8-channel UNet (E2E-FT, Marigold, Lotus-G) or a "
            f"Lotus UNet with a projection class embedding ({where})"
        )
    if output is None:
        candidates = [name for name in FAMILIES if name.startswith(base + "-")]
        raise ConfigError(
            f"cannot tell what this {base} checkpoint predicts (depth, disparity or normals) from its "
            f"configs or name ({where}); pass family= one of {', '.join(candidates)}"
        )
    return get_family(f"{base}-{output}")


def check_family_fits(spec: FamilySpec, unet: dict[str, Any]) -> None:
    """An explicit family= must match the network it will run on."""
    lotus = unet.get("class_embed_type") == "projection"
    if unet.get("in_channels") != spec.unet_in_channels or lotus != (spec.arch == "lotus"):
        need = "a projection class embedding (Lotus)" if spec.arch == "lotus" else "no class embedding"
        raise ConfigError(
            f"family {spec.name} needs a UNet with in_channels={spec.unet_in_channels} and {need}; "
            f"this checkpoint has {describe_unet(unet)}"
        )


def trained_with_e2e_ft_code(spec: FamilySpec, hints: tuple[str, ...]) -> bool:
    """E2E-FT checkpoints, and GonzaloMG's own Marigold-normals estimator, which was trained with the
    E2E-FT code (data loader and read-out)."""
    gonzalomg = spec.name == "marigold-normals" and any("gonzalomg" in hint for hint in hints)
    return spec.name.startswith("e2e-ft-") or gonzalomg


def default_normals_frame(spec: FamilySpec, hints: tuple[str, ...]) -> NormalsFrame | None:
    """The family's frame, except Marigold normals trained with the E2E-FT code: the E2E-FT frame."""
    if spec.name == "marigold-normals" and trained_with_e2e_ft_code(spec, hints):
        return LEFT_UP_BACK
    return spec.normals_frame
