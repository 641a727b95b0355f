"""The fine-tuned model as a diffusers-layout folder that the node, `replay` and DepthFtPredictor load unchanged:
the base checkpoint's files with the new unet/, and a model card (README.md) naming the family, the base,
the bags, the settings and the validation numbers before and after."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from depth_ft_ros.model.families import FamilySpec

SKIP = {"unet", "README.md", "checkpoints", "trainer_state.json"}


def copy_base(base_dir: Path, out: Path) -> None:
    """The base's files except unet/ and its card; links (Hub cache) are copied as files."""
    out.mkdir(parents=True, exist_ok=True)
    for item in base_dir.iterdir():
        if item.name in SKIP or item.name.startswith("."):
            continue
        target = out / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)


def mark_family(out: Path, spec: FamilySpec) -> None:
    """Record the output in model_index.json when the base's index does not say it (detection then does not
    depend on the folder's name)."""
    path = out / "model_index.json"
    index: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if index.get("_class_name") not in ("MarigoldDepthPipeline", "MarigoldNormalsPipeline") \
            and "prediction_type" not in index:
        index["prediction_type"] = spec.space or spec.task
        path.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def _table(before: dict[str, float], after: dict[str, float]) -> str:
    keys = [k for k in before if k not in ("frames", "no_fit")]
    rows = ["| metric | base | fine-tuned |", "|---|---|---|"]
    rows += [f"| {k} | {before[k]:.4f} | {after.get(k, float('nan')):.4f} |" for k in keys]
    return "\n".join(rows)


def model_card(spec: FamilySpec, base: str, settings: dict[str, Any], before: dict[str, float],
               after: dict[str, float]) -> str:
    bags = "\n".join(f"- {b}" for b in settings.get("bags", []))
    supervision = ("the normals of the dense ground-truth depth" if spec.task == "normals"
                   else "the LiDAR points")
    return (
        "---\nlibrary_name: diffusers\n"
        f"base_model: {base}\n"
        f"tags:\n- {spec.name}\n- fine-tuned\n---\n"
        f"# {spec.name} fine-tuned with depth-ft-ros\n\n"
        f"{spec.summary}, fine-tuned end to end from `{base}` with `depth-ft-ros finetune` (the E2E-FT recipe:\n"
        "one UNet call at t=999, loss after the VAE decoder; VAE and text encoder frozen), supervised by "
        f"{supervision} of these bags:\n\n"
        f"{bags}\n\n"
        "## Settings\n\n```json\n" + json.dumps(settings, indent=2, default=str) + "\n```\n\n"
        "## Validation on held-out frames\n\n"
        "Prediction aligned globally (scale and shift) to half of each frame's LiDAR points, scored against\n"
        "the other half (lidar_*) and the dense ground truth when the bag has one (gt_*); normals: mean angle\n"
        "to the normals of the dense ground truth (gt_mean_angle_deg). Means over frames.\n\n"
        f"{_table(before, after)}\n"
    )


def write_model(base_dir: Path, out: Path, unet: torch.nn.Module, spec: FamilySpec, card: str) -> None:
    copy_base(base_dir, out)
    unet.save_pretrained(out / "unet", safe_serialization=True)  # type: ignore[operator]
    mark_family(out, spec)
    (out / "README.md").write_text(card, encoding="utf-8")
