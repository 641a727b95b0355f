"""`depth-ft-ros finetune`: the E2E-FT recipe on a robot's own bags, with its LiDAR as supervision.

One optimizer step = `grad_accum` micro-batches of `batch_size` samples (the effective batch); each sample
is encoded by the frozen VAE (latent mean), run through the family's own single-step forward pass (the
runner's `denoise`: E2E-FT at t=999 on zeros with x0 from the scheduler's parameterisation, Lotus with its
own noise and task switcher), decoded by the frozen VAE and read out by the family (`finish_decoded`), then
compared with the metric targets (losses.py). Only the UNet is trained.

Hugging Face accelerate handles the device, mixed precision and processes: the same command runs single
process by default and under `accelerate launch` on several GPUs or machines (data parallel; each process
draws its own samples). The randomness of a step (which samples, flips, jitter) is drawn from a generator
seeded by (seed, step, process), so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from depth_ft_ros.errors import ConfigError
from depth_ft_ros.model.stages import TorchStages
from depth_ft_ros.training.bag_frames import BagFrame, TopicFlags, read_bag_frames
from depth_ft_ros.training.losses import angular_loss, metric_to_model_space, ssi_l1_loss
from depth_ft_ros.training.samples import TrainSample, augment, collate, make_sample, split_by_time
from depth_ft_ros.training.schedule import lr_factor

MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
SWITCHES = ("auto", "on", "off")
STATE_FILE = "trainer_state.json"


@dataclass(frozen=True)
class FinetuneOptions:
    """Defaults are the E2E-FT paper's (AdamW, lr 3e-5, 100 warm-up steps then exponential decay to 1 %,
    weight decay 1e-2, gradient clip 1.0, effective batch 32 = 2 x 16 accumulation, 20k steps)."""

    bags: tuple[Path, ...]
    base: str
    out: Path
    val_bags: tuple[Path, ...] = ()
    steps: int = 20000
    processing_resolution: int = 640  # the paper trains at 480x640
    lr: float = 3e-5
    warmup_steps: int = 100
    final_lr_fraction: float = 0.01
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    batch_size: int = 2
    grad_accum: int = 16
    val_fraction: float = 0.2  # held out by time, per bag, when no --val-bag is given
    val_frames: int = 32  # at most this many held-out frames are scored (evenly spaced)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    augment: bool = True
    seed: int = 0
    mixed_precision: str = "auto"  # on CUDA bf16 where supported, else fp16; "no" on CPU
    gradient_checkpointing: str = "auto"  # on with CUDA
    device: str = "auto"  # "cpu" forces the CPU
    resume: bool = False
    topics: TopicFlags = field(default_factory=TopicFlags)
    progress: bool = True

    def check(self) -> None:
        """ConfigError naming the option and its allowed values."""
        positive = {"steps": self.steps, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
                    "checkpoint_every": self.checkpoint_every, "keep_checkpoints": self.keep_checkpoints,
                    "val_frames": self.val_frames}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.processing_resolution < 0 or self.processing_resolution % 8:
            raise ConfigError(f"--processing-resolution must be 0 (native) or a positive multiple of 8, got "
                              f"{self.processing_resolution}")
        if not (self.lr > 0 and self.warmup_steps >= 0 and 0 < self.final_lr_fraction <= 1
                and self.weight_decay >= 0 and self.grad_clip > 0):
            raise ConfigError("--lr and --grad-clip must be > 0, --warmup-steps and --weight-decay >= 0, "
                              f"--final-lr-fraction in (0, 1]; got {self.lr}, {self.grad_clip}, "
                              f"{self.warmup_steps}, {self.weight_decay}, {self.final_lr_fraction}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}, got "
                              f"{self.mixed_precision!r}")
        if self.gradient_checkpointing not in SWITCHES:
            raise ConfigError(f"--gradient-checkpointing must be one of {', '.join(SWITCHES)}, got "
                              f"{self.gradient_checkpointing!r}")
        if self.device not in ("auto", "cpu"):
            raise ConfigError(f"--device must be auto or cpu (accelerate picks the GPU), got {self.device!r}")
        if Path(self.base).expanduser().resolve() == self.out.resolve():
            raise ConfigError(f"--out {self.out} is the --base folder; write the fine-tuned model elsewhere")
        if self.resume and not (self.out / "checkpoints").is_dir():
            raise ConfigError(f"--resume: {self.out}/checkpoints does not exist; nothing to resume")
        if not self.resume and self.out.exists() and any(self.out.iterdir()):
            raise ConfigError(f"--out {self.out} exists and is not empty: choose another folder, or pass "
                              "--resume to continue its last checkpoint")


@dataclass
class FinetuneResult:
    out: Path
    steps: int
    losses: list[float]  # per optimizer step (mean over the micro-batches)
    before: dict[str, float]
    after: dict[str, float]
    train_frames: int
    val_frames: int
    wall_s: float
    main_process: bool = True  # False in the other processes of a distributed run (they write nothing)


def _step_generator(seed: int, step: int, process: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + process)


def _pick(samples: list[TrainSample], batch_size: int, generator: torch.Generator) -> list[int]:
    """A micro-batch of samples of one size (frames of several cameras cannot share a tensor)."""
    first = int(torch.randint(len(samples), (), generator=generator))
    same = [i for i, s in enumerate(samples) if s.size_hw == samples[first].size_hw]
    rest = torch.randint(len(same), (batch_size - 1,), generator=generator).tolist()
    return [first, *(same[i] for i in rest)]


def _evenly(frames: list[BagFrame], n: int) -> list[BagFrame]:
    if len(frames) <= n:
        return frames
    return [frames[round(i * (len(frames) - 1) / (n - 1))] for i in range(n)] if n > 1 else frames[:1]


def _mixed_precision(option: str, cuda: bool) -> str | None:
    if option != "auto":
        return option
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return None  # `accelerate launch` / its config decides
    if cuda:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


class Finetuner:
    """One fine-tuning run; `run()` once."""

    def __init__(self, options: FinetuneOptions) -> None:
        options.check()
        self.options = options

    def _log(self, text: str) -> None:
        if self.accelerator.is_main_process:
            print(f"finetune: {text}", file=sys.stderr)

    def _load(self) -> None:
        from accelerate import Accelerator

        from depth_ft_ros.model.families import get_family
        from depth_ft_ros.model.predictor import DepthFtPredictor

        o = self.options
        cuda = o.device != "cpu" and torch.cuda.is_available()
        self.accelerator = Accelerator(cpu=not cuda, mixed_precision=_mixed_precision(o.mixed_precision, cuda))
        predictor = DepthFtPredictor.from_pretrained(o.base, device=self.accelerator.device, dtype="fp32",
                                                     processing_resolution=o.processing_resolution)
        if not predictor.spec.single_step:
            if predictor.spec.name != "marigold-depth":
                raise ConfigError(f"--base {o.base} is {predictor.spec.name}, a few-step model; fine-tune an E2E-FT, "
                                  "Lotus or Marigold depth checkpoint")
            # The E2E-FT paper's starting point: Marigold trained on, as E2E-FT, at t=999 on zeros.
            predictor = DepthFtPredictor.from_pretrained(o.base, device=self.accelerator.device, dtype="fp32",
                                                         processing_resolution=o.processing_resolution,
                                                         family="e2e-ft-depth")
        if not isinstance(predictor.stages, TorchStages):
            raise ConfigError(f"--base {o.base} is an ONNX export ({predictor.stages.runtime}): fine-tune the "
                              "diffusers checkpoint it was exported from")
        self.predictor = predictor
        self.stages: TorchStages = predictor.stages
        self.spec = get_family(predictor.family)
        unet = predictor.runner.unet
        unet.requires_grad_(True).train()
        if o.gradient_checkpointing == "on" or (o.gradient_checkpointing == "auto" and cuda):
            unet.enable_gradient_checkpointing()
        self.optimizer = torch.optim.AdamW(unet.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, o.steps, o.warmup_steps, o.final_lr_fraction))
        # The LR scheduler is stepped here once per optimizer step (accelerate's wrapper would step it once per
        # process), and saved with the checkpoints.
        self.unet, self.optimizer = self.accelerator.prepare(unet, self.optimizer)
        self.accelerator.register_for_checkpointing(self.lr_scheduler)
        predictor.runner.unet = self.unet

    def _data(self) -> tuple[list[TrainSample], list[BagFrame], list[str]]:
        o = self.options
        frames: list[BagFrame] = []
        notes: list[str] = []
        for bag in o.bags:
            read = read_bag_frames(bag, o.topics)
            frames += read.frames
            notes += [f"{bag}: {n} images skipped: {reason}" for reason, n in read.skipped.items()]
        if o.val_bags:
            train, held = frames, []
            for bag in o.val_bags:
                held += read_bag_frames(bag, o.topics).frames
        else:
            train, held = split_by_time(frames, o.val_fraction)
        if not train:
            raise ConfigError("no training frames left after the held-out split; record more frames or pass "
                              "--val-bag")
        frame = self.predictor.normals_frame if self.spec.task == "normals" else None
        samples = [make_sample(f, o.processing_resolution, frame) for f in train]
        return samples, _evenly(held, o.val_frames), notes

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] network input -> the family's read-out [B,C,H,W], differentiable w.r.t. the UNet."""
        with torch.no_grad():  # frozen encoder: its latent is a constant input
            latent = self.stages.encode(image)
        # The predictor's own stages: the family's start latent, UNet call and x0, then decoder and read-out.
        return self.stages.decode(self.stages.denoise(latent, self.stages.runner.noise(latent)))

    def loss(self, samples: list[TrainSample]) -> tuple[torch.Tensor, int]:
        """The task loss of one micro-batch (samples of one size) and the number of images it counts."""
        device = self.accelerator.device
        image, depth_m, normals = collate(samples, self.predictor.pad_multiple)
        image, depth_m = image.to(device), depth_m.to(device)
        with self.accelerator.autocast():
            prediction = self._forward(image)
        if self.spec.task == "normals":
            assert normals is not None
            normals = normals.to(device)
            return angular_loss(prediction, torch.nan_to_num(normals), torch.isfinite(normals).all(1, keepdim=True))
        mask = torch.isfinite(depth_m) & (depth_m > 0)
        target = metric_to_model_space(torch.where(mask, depth_m, torch.ones_like(depth_m)), self.spec.space or "")
        return ssi_l1_loss(prediction, target, mask)

    def _validate(self, frames: list[BagFrame]) -> dict[str, float]:
        from depth_ft_ros.training.validation import validate

        runner = self.predictor.runner
        unet = self.accelerator.unwrap_model(self.unet)
        runner.unet = unet
        unet.eval()
        try:
            return validate(self.predictor, frames) if frames else {}
        finally:
            unet.train()
            runner.unet = self.unet

    def _save_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        root = self.options.out / "checkpoints"
        path = root / f"step-{step:07d}"
        self.accelerator.save_state(str(path))
        if self.accelerator.is_main_process:
            (path / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
            old = sorted(p for p in root.iterdir() if p.name.startswith("step-"))
            for stale in old[: -self.options.keep_checkpoints]:
                shutil.rmtree(stale)

    def _resume(self) -> dict[str, Any]:
        root = self.options.out / "checkpoints"
        done = sorted(p for p in root.iterdir() if (p / STATE_FILE).is_file())
        if not done:
            raise ConfigError(f"--resume: no complete checkpoint under {root}")
        self.accelerator.load_state(str(done[-1]))
        state: dict[str, Any] = json.loads((done[-1] / STATE_FILE).read_text(encoding="utf-8"))
        self._log(f"resumed {done[-1]} (step {state['step']})")
        return state

    def run(self) -> FinetuneResult:
        start_s = time.monotonic()
        o = self.options
        self._load()
        samples, held, notes = self._data()
        for note in notes:
            self._log(note)
        self._log(f"{self.spec.name} from {o.base}: {len(samples)} training frames, {len(held)} held-out frames, "
                  f"processing resolution {o.processing_resolution}, device {self.accelerator.device}, "
                  f"{self.accelerator.num_processes} process(es), mixed precision {self.accelerator.mixed_precision}")
        state: dict[str, Any] = {"step": 0, "losses": [], "validation": {}}
        if o.resume:
            state = self._resume()
        else:
            # Validation runs on the main process only: the others have no use for it and would only wait.
            state["validation"]["0"] = self._validate(held) if self.accelerator.is_main_process else {}
            self._log(f"validation before: {state['validation']['0']}")
        progress = None
        if o.progress and self.accelerator.is_main_process:
            try:
                from tqdm import tqdm

                progress = tqdm(total=o.steps, initial=state["step"], desc="finetune", unit="step")
            except ImportError:
                progress = None
        process = self.accelerator.process_index
        while state["step"] < o.steps:
            step = state["step"]
            generator = _step_generator(o.seed, step, process)
            total = 0.0
            for micro in range(o.grad_accum):
                batch = [samples[i] for i in _pick(samples, o.batch_size, generator)]
                if o.augment:
                    batch = [augment(s, generator) for s in batch]
                sync = micro == o.grad_accum - 1
                with contextlib.nullcontext() if sync else self.accelerator.no_sync(self.unet):
                    loss, _images = self.loss(batch)
                    self.accelerator.backward(loss / o.grad_accum)
                total += float(loss.detach()) / o.grad_accum
            # The step's loss over every process's samples (the effective batch), as the gradient is.
            total = float(self.accelerator.reduce(torch.tensor(total, device=self.accelerator.device), "mean"))
            self.accelerator.clip_grad_norm_(self.unet.parameters(), o.grad_clip)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            state["step"] = step + 1
            state["losses"].append(total)
            if progress is not None:
                progress.set_postfix(loss=f"{total:.4f}", lr=f"{self.lr_scheduler.get_last_lr()[0]:.2e}")
                progress.update(1)
            if state["step"] % o.checkpoint_every == 0 or state["step"] == o.steps:
                if self.accelerator.is_main_process:
                    state["validation"][str(state["step"])] = self._validate(held)
                self._save_checkpoint(state["step"], state)
        if progress is not None:
            progress.close()
        before = state["validation"].get("0", {})
        after = state["validation"].get(str(o.steps), {})
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self._write_model(before, after, len(samples))
            self._log(f"validation after {o.steps} steps: {after}")
        return FinetuneResult(o.out, state["step"], list(state["losses"]), before, after, len(samples), len(held),
                              time.monotonic() - start_s, self.accelerator.is_main_process)

    def _write_model(self, before: dict[str, float], after: dict[str, float], n_train: int) -> None:
        from depth_ft_ros.training.output import model_card, write_model

        o = self.options
        settings = {k: v for k, v in asdict(o).items() if k not in ("out", "resume", "progress")}
        settings["bags"] = [str(b) for b in o.bags]
        settings["val_bags"] = [str(b) for b in o.val_bags]
        settings["train_frames"] = n_train
        settings["family"] = self.spec.name
        settings["processes"] = self.accelerator.num_processes  # effective batch: batch x accumulation x processes
        card = model_card(self.spec, o.base, settings, before, after)
        write_model(self.predictor.model_dir, o.out, self.accelerator.unwrap_model(self.unet), self.spec, card)
