"""Single-step diffusion depth / normals predictor: load a checkpoint, run frames, time the stages.

    pred = DepthFtPredictor.from_pretrained("GonzaloMG/marigold-e2e-ft-depth")
    out = pred.predict(rgb)            # rgb: HxWx3 uint8 RGB
    out.depth, out.timings_ms

Stages (each timed): preprocess (uint8 -> [-1, 1], resize so the longest side is
processing_resolution, antialiased; pad bottom/right by replication to a multiple of 8 px, the VAE
factor, as diffusers does: the UNet handles latent sizes that are not a multiple of its own
down-sampling factor), encode (VAE latent mean x scaling factor), unet (family-specific, families/),
decode (VAE decoder + the family's read-out), postprocess (unpad, the family's resize back to the
input size, normals renormalised and rotated into the ROS optical frame).

The network runs in `dtype`; pre- and post-processing run in float32. The three network stages run
behind model/stages.py's StageExecutor: PyTorch for a checkpoint, ONNX Runtime for a folder written by
`depth-ft-ros export-onnx` (model/onnx/runtime.py: fixed processing size, probed at load); everything
else is this same code for both. Not thread-safe: use one predictor per thread.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from depth_ft_ros.errors import ConfigError, InputError
from depth_ft_ros.model.families import (
    FamilyRunner,
    FamilySpec,
    NormalsFrame,
    check_noise,
    get_family,
    get_normals_frame,
    make_runner,
    resolve_noise,
    resolve_steps,
    to_optical_frame,
)
from depth_ft_ros.model.families import checkpoint as ckpt
from depth_ft_ros.model.families.detect import (
    CheckpointConfigs,
    check_family_fits,
    default_normals_frame,
    detect_family,
    name_hints,
    trained_with_e2e_ft_code,
)
from depth_ft_ros.model.families.runtime import StageTimer, check_frame, resolve_device, resolve_dtype
from depth_ft_ros.model.network_input import pad_to_multiple, processing_size, to_network_input
from depth_ft_ros.model.onnx.runtime import is_export_dir
from depth_ft_ros.model.options import PredictorOptions
from depth_ft_ros.model.stages import StageExecutor, TorchStages

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

_ATTENTION = ("sdpa", "eager")


@dataclass
class Prediction:
    """One frame's outputs at the input resolution (float32 numpy arrays).

    depth / disparity: HxW in [0, 1], affine-invariant (depth: 0 near, 1 far; disparity: high near).
    normals: HxWx3 unit vectors in the ROS optical frame (x right, y down, z forward).
    timings_ms: preprocess, encode, unet, decode, postprocess, total (per frame; a batch's times are
    split evenly between its frames). With `encoded=`, the first prediction made from that encoding
    reports its preprocess/encode times (and counts them in total), later ones report 0 for them.
    """

    depth: np.ndarray | None = None
    disparity: np.ndarray | None = None
    normals: np.ndarray | None = None
    space: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    processing_hw: tuple[int, int] | None = None  # network input size before padding

    @property
    def relative(self) -> np.ndarray | None:
        """The affine-invariant map, whichever of depth or disparity the model gives."""
        return self.depth if self.depth is not None else self.disparity


@dataclass(frozen=True)
class FrameGeometry:
    input_hw: tuple[int, int]
    processed_hw: tuple[int, int]
    padding_hw: tuple[int, int]  # rows added at the bottom, columns at the right


@dataclass
class EncodedFrame:
    """Frames' VAE latents plus what is needed to reuse them with another predictor (same VAE)."""

    latent: torch.Tensor  # [B, 4, h, w], already x scaling_factor
    geometries: list[FrameGeometry]  # one per frame: input sizes may differ, the processing size does not
    vae_key: str
    processing_resolution: int
    timings_ms: dict[str, float]
    _timings_taken: bool = field(default=False, init=False, repr=False)

    def take_timings(self) -> dict[str, float]:
        """The preprocess/encode timings the first time (its first user reports and counts them),
        then {} (the work was done once)."""
        if self._timings_taken:
            return {}
        self._timings_taken = True
        return dict(self.timings_ms)


class DepthFtPredictor:
    """Runs one depth or normals checkpoint. Build it with `from_pretrained`."""

    def __init__(
        self,
        *,
        runner: FamilyRunner,
        vae: AutoencoderKL | None,
        text_embedding: torch.Tensor,
        spec: FamilySpec,
        normals_frame: NormalsFrame | None,
        model_dir: Path,
        model_id: str,
        vae_key: str,
        device: torch.device,
        dtype: torch.dtype,
        processing_resolution: int,
        pad_multiple: int,
        match_input_resolution: bool = True,
        num_inference_steps: int = 1,
        stages: StageExecutor | None = None,
        fixed_hw: tuple[int, int] | None = None,
    ) -> None:
        self.runner = runner
        self.vae = vae
        self.spec = spec
        self.family = spec.name
        self.task = spec.task
        self.space = spec.space
        self.normals_frame = normals_frame
        self.model_dir = model_dir
        self.model_id = model_id
        self.vae_key = vae_key
        self.device = device
        self.dtype = dtype
        self.processing_resolution = processing_resolution
        self.pad_multiple = pad_multiple
        self.match_input_resolution = match_input_resolution
        self.num_inference_steps = num_inference_steps
        self.channels_last = False
        self._text = text_embedding.to(device=device, dtype=dtype)
        if stages is None:
            assert vae is not None, "the torch runtime needs the VAE"
            stages = TorchStages(runner, vae, self._text, dtype)
        self.stages = stages
        self.runtime = stages.runtime  # "torch" | "onnxruntime"
        self.fixed_hw = fixed_hw  # the padded network input size an ONNX export was made for
        self.speed_options: tuple[bool, str, bool] | None = None  # (channels_last, attention, compile), torch
        self._closed = False

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        processing_resolution: int = 768,
        *,
        share_vae_with: DepthFtPredictor | None = None,
        **options: Any,
    ) -> DepthFtPredictor:
        """Load a diffusers-layout folder or a Hub id (from the HF cache; see `depth-ft-ros fetch-model`).

        Options: see PredictorOptions. share_vae_with: a loaded predictor whose VAE this one uses instead of
        loading its own when the two are the same network (equal vae_key: config and weights by content) on
        the same device, dtype and speed options; otherwise this one loads its own (uses_vae_of tells).
        Raises ConfigError for bad settings, ModelLoadError for a checkpoint that cannot be found, read or
        recognised.
        """
        opts = PredictorOptions.from_kwargs(options)
        if is_export_dir(model):
            from depth_ft_ros.model.onnx.loader import load_export

            return cls(**load_export(Path(model), device, dtype, processing_resolution, opts))
        resolved_device = resolve_device(device)
        resolved_dtype = resolve_dtype(dtype, resolved_device)
        if not isinstance(processing_resolution, int) or processing_resolution < 0:
            raise ConfigError(f"processing_resolution must be an int >= 0 (0 = native), got {processing_resolution!r}")
        if opts.attention not in _ATTENTION:
            raise ConfigError(f"attention must be one of {', '.join(_ATTENTION)}, got {opts.attention!r}")
        check_noise(opts.noise)

        resolved = ckpt.resolve_model(model, opts.revision)
        model_dir = resolved.path
        configs = CheckpointConfigs(
            model_index=ckpt.read_json(model_dir, "model_index.json"),
            unet=ckpt.read_json(model_dir, "unet/config.json"),
            scheduler=ckpt.read_json(model_dir, "scheduler/scheduler_config.json"),
            hints=name_hints(resolved.hub_id, model_dir),
        )
        vae_config = ckpt.read_json(model_dir, "vae/config.json")
        vae_key = ckpt.component_identity(model_dir, "vae")
        ckpt.find_weights(model_dir, "unet")
        if opts.family:
            spec = get_family(opts.family)
            check_family_fits(spec, configs.unet)
        else:
            spec = detect_family(configs)
        # Resolved here, once, before any weights load: the runner is built from these values.
        steps = resolve_steps(spec, opts.num_inference_steps, configs.model_index)
        noise = resolve_noise(spec, opts.noise)
        frame = default_normals_frame(spec, configs.hints)
        if opts.normals_frame is not None:
            frame = get_normals_frame(opts.normals_frame)
        pad_multiple = _pad_multiple(vae_config, opts.pad_multiple)

        text_embedding = ckpt.empty_text_embedding(model_dir)
        speed = (opts.channels_last, opts.attention, opts.compile)
        unet = ckpt.load_component(model_dir, "unet", resolved_dtype).to(resolved_device)
        vae = _shared_vae(share_vae_with, vae_key, resolved_device, resolved_dtype, speed)
        vae_is_shared = vae is not None
        if vae is None:
            vae = ckpt.load_component(model_dir, "vae", resolved_dtype).to(resolved_device)
        runner = make_runner(
            spec, unet, configs.scheduler, configs.model_index, num_inference_steps=steps, noise=noise,
            seed=opts.seed, e2e_ft_readout=trained_with_e2e_ft_code(spec, configs.hints),
        )
        predictor = cls(
            runner=runner, vae=vae, text_embedding=text_embedding, spec=spec, normals_frame=frame,
            model_dir=model_dir, model_id=resolved.model_id, vae_key=vae_key,
            device=resolved_device, dtype=resolved_dtype, processing_resolution=processing_resolution,
            pad_multiple=pad_multiple, match_input_resolution=opts.match_input_resolution,
            num_inference_steps=steps,
        )
        predictor._speed_up(speed, vae_ready=vae_is_shared)
        return predictor

    def _speed_up(self, speed: tuple[bool, str, bool], *, vae_ready: bool) -> None:
        """speed: (channels_last, attention, compile); vae_ready: the VAE is another predictor's, already set up
        with the same speed options (model/networks.py shares it)."""
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        channels_last, attention, compile = speed
        processor = AttnProcessor2_0 if attention == "sdpa" else AttnProcessor
        assert self.vae is not None  # the torch runtime
        for module in (self.runner.unet,) if vae_ready else (self.runner.unet, self.vae):
            module.set_attn_processor(processor())
            if channels_last:
                module.to(memory_format=torch.channels_last)
        self.channels_last = channels_last
        self.speed_options = speed
        if compile:
            self.runner.unet.compile()
            if not vae_ready:
                self.vae.encoder.compile()
                self.vae.decoder.compile()

    # ---- public API -------------------------------------------------------------------------

    def predict(self, rgb: np.ndarray, encoded: EncodedFrame | None = None) -> Prediction:
        """One HxWx3 uint8 RGB frame -> Prediction; `encoded` (from a predictor with the same VAE,
        see `encode`) skips preprocessing and encoding."""
        return self._run([check_frame(rgb)], encoded)[0]

    def predict_batch(self, frames: Sequence[np.ndarray], encoded: EncodedFrame | None = None) -> list[Prediction]:
        """Several frames, in order; frames with one processing size (e.g. 640x480 and 1280x960 at 768) go
        through the network as one batch (predict_group), each read out at its own size. `encoded` (from
        `encode_batch` of the same frames, by a predictor with the same VAE) skips preprocessing and encoding."""
        checked = [check_frame(frame) for frame in frames]
        if encoded is not None:
            return self.predict_group(checked, encoded)
        groups: dict[tuple[int, int], list[int]] = {}
        for index, frame in enumerate(checked):
            groups.setdefault(self.processing_size(frame), []).append(index)
        results: list[Prediction | None] = [None] * len(checked)
        for indices in groups.values():
            for index, prediction in zip(indices, self.predict_group([checked[i] for i in indices]), strict=True):
                results[index] = prediction
        return [r for r in results if r is not None]

    def predict_group(self, frames: Sequence[np.ndarray], encoded: EncodedFrame | None = None) -> list[Prediction]:
        """Frames already grouped by processing size (Models.predict groups them once for every network) as one
        forward; InputError when their processing sizes differ. `encoded`: as in predict_batch."""
        if not frames:
            return []
        return self._run([check_frame(frame) for frame in frames], encoded)

    def processing_size(self, rgb: np.ndarray) -> tuple[int, int]:
        """(h, w) the network sees a frame at, before padding: frames with equal ones can share a batch."""
        return processing_size(rgb.shape[0], rgb.shape[1], self.processing_resolution)

    def encode(self, rgb: np.ndarray) -> EncodedFrame:
        """Preprocess and VAE-encode a frame once, for every predictor whose vae_key is equal."""
        return self.encode_batch([rgb])

    @torch.inference_mode()
    def encode_batch(self, frames: Sequence[np.ndarray]) -> EncodedFrame:
        """`encode` for frames of one processing size, as one batch (for predict_batch(frames, encoded=...))."""
        self._check_open()
        checked = [check_frame(frame) for frame in frames]
        timer = StageTimer(self.device)
        image, geometries = self._preprocess(checked)
        timer.lap("preprocess")
        latent = self.stages.encode(image)
        timer.lap("encode")
        times = timer.done(1)  # the whole batch's times: the predictor that adopts it splits them per frame
        return EncodedFrame(
            latent=latent, geometries=geometries, vae_key=self.vae_key,
            processing_resolution=self.processing_resolution,
            timings_ms={"preprocess": times["preprocess"], "encode": times["encode"]},
        )

    @property
    def text_embedding(self) -> torch.Tensor:
        """The cached empty-prompt embedding [1, tokens, dim] on the predictor's device and dtype."""
        self._check_open()
        return self._text

    def close(self) -> None:
        """Drop the networks and free their (GPU) memory; the predictor cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        del self.runner, self.vae, self._text, self.stages
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def __repr__(self) -> str:
        return (
            f"DepthFtPredictor(model_id={self.model_id!r}, family={self.family!r}, device={self.device}, "
            f"dtype={self.dtype}, processing_resolution={self.processing_resolution}, runtime={self.runtime})"
        )

    # ---- stages -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this DepthFtPredictor was closed; load it again with from_pretrained")

    @torch.inference_mode()
    def _run(self, frames: list[np.ndarray], encoded: EncodedFrame | None) -> list[Prediction]:
        self._check_open()
        timer = StageTimer(self.device)
        if encoded is None:
            image, geometries = self._preprocess(frames)
            timer.lap("preprocess")
            latent = self.stages.encode(image)
            timer.lap("encode")
        else:
            latent, geometries = self._adopt(encoded, frames)
            timer.add(encoded.take_timings())  # the shared encoding counts once, in its first user
        if self.channels_last:
            latent = latent.contiguous(memory_format=torch.channels_last)
        pred_latent = self.stages.denoise(latent, self.runner.noise(latent))
        timer.lap("unet")
        result = self.stages.decode(pred_latent)
        timer.lap("decode")
        arrays = self._postprocess(result, geometries)
        timer.lap("postprocess")
        timings = timer.done(len(frames))
        return [self._prediction(array, geometry, timings) for array, geometry in zip(arrays, geometries, strict=True)]

    def _preprocess(self, frames: list[np.ndarray]) -> tuple[torch.Tensor, list[FrameGeometry]]:
        height, width = frames[0].shape[:2]
        if all(frame.shape == frames[0].shape for frame in frames):
            batch = torch.from_numpy(np.stack(frames)).to(self.device)  # [B, H, W, 3] uint8: 4x less to copy
            image = to_network_input(batch, self.processing_resolution)  # the one definition, shared with training
        else:  # several input sizes, one processing size: each resized on its own, then one batch
            if len({self.processing_size(frame) for frame in frames}) != 1:
                raise InputError(f"frames of sizes {[f.shape[1::-1] for f in frames]} are processed at different "
                                 f"sizes at processing_resolution {self.processing_resolution}: not one batch")
            image = torch.cat([to_network_input(torch.from_numpy(frame[None]).to(self.device),
                                                self.processing_resolution) for frame in frames])
        new_hw = (int(image.shape[-2]), int(image.shape[-1]))
        pad_h, pad_w = -new_hw[0] % self.pad_multiple, -new_hw[1] % self.pad_multiple
        if self.fixed_hw is not None and (new_hw[0] + pad_h, new_hw[1] + pad_w) != self.fixed_hw:
            raise InputError(
                f"frame {width}x{height} is processed at {new_hw[1] + pad_w}x{new_hw[0] + pad_h}, but this ONNX "
                f"export was made for {self.fixed_hw[1]}x{self.fixed_hw[0]}; export it for this camera "
                f"(depth-ft-ros export-onnx --frame-size {width}x{height} --resolution {self.processing_resolution})"
            )
        image = pad_to_multiple(image, self.pad_multiple)
        # The HWC -> CHW permute leaves channels-last strides; pick the layout on purpose, since the
        # convolution kernels (and their rounding) depend on it.
        image = image.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        return image, [FrameGeometry((f.shape[0], f.shape[1]), new_hw, (pad_h, pad_w)) for f in frames]

    def _adopt(self, encoded: EncodedFrame, frames: list[np.ndarray]) -> tuple[torch.Tensor, list[FrameGeometry]]:
        geometry = encoded.geometries[0]  # the processing size and padding are the batch's
        if encoded.vae_key != self.vae_key:
            raise ConfigError(
                f"encoded frame comes from a different VAE (key {encoded.vae_key[:12]}, this predictor "
                f"{self.vae_key[:12]}); encode with this predictor instead"
            )
        if encoded.processing_resolution != self.processing_resolution:
            raise ConfigError(
                f"encoded frame was processed at resolution {encoded.processing_resolution}, this predictor "
                f"uses {self.processing_resolution}; give both predictors the same processing_resolution"
            )
        padded = [size + pad for size, pad in zip(geometry.processed_hw, geometry.padding_hw, strict=True)]
        if any(size % self.pad_multiple for size in padded):
            raise ConfigError(f"encoded frame is padded to {padded}, not a multiple of {self.pad_multiple}")
        if [f.shape[:2] for f in frames] != [g.input_hw for g in encoded.geometries]:
            raise InputError(f"encoded frames are {[g.input_hw for g in encoded.geometries]}, the rgb frames "
                             f"{[f.shape[:2] for f in frames]}")
        return encoded.latent.to(device=self.device, dtype=self.dtype), encoded.geometries

    def _postprocess(self, result: torch.Tensor, geometries: list[FrameGeometry]) -> list[np.ndarray]:
        pad_h, pad_w = geometries[0].padding_hw
        result = result[:, :, : result.shape[2] - pad_h, : result.shape[3] - pad_w]
        sizes_hw = [g.input_hw if self.match_input_resolution else g.processed_hw for g in geometries]
        if all(size == sizes_hw[0] for size in sizes_hw):
            return list(self._read_out(self.runner.resize_back(result, sizes_hw[0])))
        return [self._read_out(self.runner.resize_back(result[i:i + 1], size))[0] for i, size in enumerate(sizes_hw)]

    def _read_out(self, result: torch.Tensor) -> np.ndarray:
        """[B, C, H, W] at the output size -> [B, H, W] depth or [B, H, W, 3] optical-frame normals."""
        if self.task == "normals":
            assert self.normals_frame is not None
            return to_optical_frame(result, self.normals_frame).permute(0, 2, 3, 1).cpu().numpy()
        return result[:, 0].cpu().numpy()

    def _prediction(self, array: np.ndarray, geometry: FrameGeometry, timings: dict[str, float]) -> Prediction:
        array = np.ascontiguousarray(array, dtype=np.float32)
        prediction = Prediction(space=self.space, timings_ms=dict(timings), processing_hw=geometry.processed_hw)
        if self.task == "normals":
            prediction.normals = array
        elif self.space == "disparity":
            prediction.disparity = array
        else:
            prediction.depth = array
        return prediction


def _shared_vae(other: DepthFtPredictor | None, vae_key: str, device: torch.device, dtype: torch.dtype,
                speed: tuple[bool, str, bool]) -> AutoencoderKL | None:
    """`other`'s VAE when it is this checkpoint's VAE (same content key) set up the same way, else None."""
    if other is None or other.runtime != "torch" or getattr(other, "vae", None) is None:  # None or closed
        return None
    if (other.vae_key, other.device, other.dtype, other.speed_options) != (vae_key, device, dtype, speed):
        return None
    return other.vae


def _pad_multiple(vae_config: dict[str, Any], requested: int | None) -> int:
    vae_factor = 2 ** (len(vae_config.get("block_out_channels", [0] * 4)) - 1)
    if requested is None:  # diffusers pads to the VAE factor; the UNet copes with any latent size
        return vae_factor
    if not isinstance(requested, int) or requested <= 0 or requested % vae_factor:
        raise ConfigError(
            f"pad_multiple must be a positive multiple of {vae_factor} (the VAE factor), got {requested!r}"
        )
    return requested


__all__ = ["DepthFtPredictor", "EncodedFrame", "FrameGeometry", "Prediction", "PredictorOptions"]
