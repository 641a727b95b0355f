"""The networks of a node: one depth and/or one normals predictor, loaded once and shared by every camera.

`predict` runs the frames of several cameras: frames with one processing size (the size the network sees them
at: cameras of one resolution, or e.g. 640x480 and 1280x960 at processing_resolution 768) that want the same
outputs are grouped here, once, and each group goes through each network as one forward
(DepthFtPredictor.predict_group; at most max_batch frames per forward). A batch that fails is run again frame by
frame, so a frame the network refuses (e.g. a size an ONNX export was not made for) fails alone and the other
cameras' frames still come out.

What the two predictors share (describe() and /diagnostics say it):
- shared_vae: one AutoencoderKL object in memory. The depth and normals checkpoints of E2E-FT and Lotus are
  published as separate folders that carry the same VAE; when their VAE configs and weight files are equal by
  content (vae_key, model/families/checkpoint.py component_identity) the normals predictor is loaded over the
  depth predictor's VAE instead of a second copy.
- shared_encoder: each frame is encoded once and the latent serves both networks (equal vae_key). With PyTorch
  it goes with shared_vae; two ONNX exports of one VAE share the encoding but run their own encoder sessions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    from depth_ft_ros.model.predictor import DepthFtPredictor, EncodedFrame


@dataclass
class Predicted:
    """One frame's network outputs, or why the network refused it."""

    relative: np.ndarray | None = None  # affine-invariant depth or disparity in [0, 1]
    normals: np.ndarray | None = None  # HxWx3 unit vectors, optical frame
    timings_ms: dict[str, float] = field(default_factory=dict)  # depth.* / normals.* stages, this frame's share
    batch_size: int = 1  # frames in the forward this one went through
    error: Exception | None = None


class Models:
    """The loaded predictors, and what they share (see the module docstring)."""

    def __init__(self, depth: DepthFtPredictor | None, normals: DepthFtPredictor | None) -> None:
        if depth is None and normals is None:
            raise ConfigError("parameters depth_model and normals_model are both empty: set at least one")
        self.depth = depth
        self.normals = normals
        # One latent for both networks: the same VAE by content (and, for ONNX, the same size and dtype).
        self.shared_encoder = depth is not None and normals is not None and depth.vae_key == normals.vae_key
        # One VAE object in memory (Models.load shares it; None for ONNX Runtime predictors).
        self.shared_vae = (depth is not None and normals is not None and depth.vae is not None
                           and depth.vae is normals.vae)
        self._parameter_bytes: int | None = None
        self.threads = ""  # the CPU thread budget the models were loaded with (Models.load)

    @classmethod
    def load(cls, config: NodeConfig) -> Models:
        """The checkpoints of depth_model / normals_model, after setting the network's CPU thread budget
        (cpu_threads, model/threads.py: before the models load, while torch still allows it)."""
        from depth_ft_ros.model.families.runtime import resolve_device
        from depth_ft_ros.model.predictor import DepthFtPredictor
        from depth_ft_ros.model.threads import apply_torch_threads

        budget = apply_torch_threads(config.cpu_threads, resolve_device(config.device).type)
        loaded: dict[str, DepthFtPredictor] = {}
        try:
            for name, task in (("depth_model", "depth"), ("normals_model", "normals")):
                model = getattr(config, name)
                if not model:
                    continue
                try:  # the normals checkpoint reuses the depth checkpoint's VAE when it is the same network
                    predictor = DepthFtPredictor.from_pretrained(
                        model, device=str(config.device), dtype=str(config.dtype),
                        processing_resolution=config.processing_resolution, share_vae_with=loaded.get("depth"),
                        onnx_providers=config.onnx_providers, onnx_probe=str(config.onnx_probe))
                except ModelLoadError as exc:  # name the parameter: both models may be local folders
                    raise ModelLoadError(f"parameter {name}: {exc}") from exc
                loaded[task] = predictor
                if predictor.task != task:
                    raise ConfigError(f"parameter {name}={predictor.model_id!r} is a {predictor.task} checkpoint, "
                                      f"not a {task} one")
        except BaseException:
            for predictor in loaded.values():  # free the GPU memory of what did load
                predictor.close()
            raise
        models = cls(loaded.get("depth"), loaded.get("normals"))
        models.threads = budget.describe()
        return models

    def close(self) -> None:
        for predictor in (self.depth, self.normals):
            if predictor is not None:
                predictor.close()

    def describe(self) -> dict[str, str]:
        models = [p for p in (self.depth, self.normals) if p is not None]
        return {
            "depth_model": self.depth.model_id if self.depth else "",
            "normals_model": self.normals.model_id if self.normals else "",
            "family": ", ".join(p.family for p in models),
            "device": str(models[0].device),
            "dtype": str(models[0].dtype).replace("torch.", ""),
            "shared_vae": str(self.shared_vae).lower(),
            "shared_encoder": str(self.shared_encoder).lower(),
            "parameters_mib": f"{self.parameter_bytes() / 2**20:.1f}",
            **({"cpu_threads": self.threads} if self.threads else {}),
        }

    def parameter_bytes(self) -> int:
        """Bytes of network parameters held: each module object counted once (a shared VAE once); 0 for ONNX
        Runtime sessions."""
        if self._parameter_bytes is not None:
            return self._parameter_bytes
        seen: set[int] = set()
        total = 0
        for predictor in (self.depth, self.normals):
            if predictor is None:
                continue
            for module in (getattr(predictor.runner, "unet", None), predictor.vae):
                if module is None or id(module) in seen:
                    continue
                seen.add(id(module))
                total += sum(p.numel() * p.element_size() for p in module.parameters())
        self._parameter_bytes = total
        return total

    def processing_size(self, rgb: np.ndarray) -> tuple[int, int]:
        """(h, w) the networks see a frame at, before padding (both predictors share processing_resolution)."""
        first = self.depth if self.depth is not None else self.normals
        assert first is not None
        return first.processing_size(rgb)

    def predict(self, frames: list[np.ndarray], want_normals: list[bool], max_batch: int = 0) -> list[Predicted]:
        """Each frame's outputs, in order; want_normals per frame; max_batch 0 = no limit."""
        first = self.depth if self.depth is not None else self.normals
        assert first is not None
        groups: dict[tuple[tuple[int, int], bool], list[int]] = {}
        for index, (rgb, normals) in enumerate(zip(frames, want_normals, strict=True)):
            try:
                size = first.processing_size(rgb)
            except Exception:  # an empty or malformed frame: its own group, where its own error comes out
                size = (-index - 1, 0)
            groups.setdefault((size, normals and self.normals is not None), []).append(index)
        results: list[Predicted] = [Predicted() for _ in frames]
        step = max_batch if max_batch > 0 else len(frames) or 1
        for (_, normals), indices in groups.items():
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                try:
                    outputs = self._forward([frames[i] for i in chunk], normals)
                except Exception as exc:
                    if len(chunk) == 1:
                        results[chunk[0]] = Predicted(error=exc)
                        continue
                    outputs = []  # find the frame at fault: the others still come out
                    for i in chunk:
                        try:
                            outputs.append(self._forward([frames[i]], normals)[0])
                        except Exception as single_exc:
                            outputs.append(Predicted(error=single_exc))
                for i, out in zip(chunk, outputs, strict=True):
                    results[i] = out
        return results

    def _forward(self, frames: list[np.ndarray], want_normals: bool) -> list[Predicted]:
        """Frames of one processing size (grouped by predict) through the networks as one batch."""
        out = [Predicted(batch_size=len(frames)) for _ in frames]
        encoded: EncodedFrame | None = None
        if self.depth is not None:
            if self.shared_encoder and want_normals:
                encoded = self.depth.encode_batch(frames)
            for item, prediction in zip(out, self.depth.predict_group(frames, encoded=encoded), strict=True):
                item.relative = prediction.relative
                item.timings_ms.update({f"depth.{k}": v for k, v in prediction.timings_ms.items()})
        if self.normals is not None and want_normals:
            for item, prediction in zip(out, self.normals.predict_group(frames, encoded=encoded), strict=True):
                item.normals = prediction.normals
                item.timings_ms.update({f"normals.{k}": v for k, v in prediction.timings_ms.items()})
        return out
