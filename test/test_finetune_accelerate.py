"""`finetune` as two data-parallel processes on the CPU (gloo) under `accelerate launch`: it trains (the loss over
both processes' samples falls), the main process alone reports and writes the output folder, and the folder loads
in the node's predictor with the trained UNet.

Note on the launcher: with accelerate 1.16, `accelerate launch --cpu --num_processes 2` starts ONE process (the
simple launcher; several CPU processes need mpirun). `--multi_gpu --num_processes 2` starts two through torchrun,
and the trainer picks the CPU and gloo where CUDA is absent (hidden here with CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
STEPS = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_cpu_processes_train_save_once_and_the_output_loads(tmp_path: Path) -> None:
    from depth_ft_ros.cli.demo_bag import write_demo_bag
    from depth_ft_ros.evaluation.tiny import make_tiny_model
    from depth_ft_ros.model.predictor import DepthFtPredictor

    bag = tmp_path / "bag"
    write_demo_bag(bag, frames=8, size=(96, 72))
    base = make_tiny_model(tmp_path / "tiny", "e2e-ft-depth")
    out = tmp_path / "ft"
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               "-m", "depth_ft_ros.cli", "finetune", str(bag), "--base", str(base), "--out", str(out),
               "--steps", str(STEPS), "--processing-resolution", "64", "--lr", "1e-3", "--warmup-steps", "5",
               "--batch-size", "2", "--grad-accum", "1", "--checkpoint-every", str(STEPS), "--val-frames", "1",
               "--no-progress", "--no-augment"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "2 process(es)" in run.stderr  # really two processes
    assert run.stdout.count("fine-tuned model:") == 1, run.stdout  # one report, from the main process
    assert run.stderr.count("validation after") == 1

    state = json.loads((out / "checkpoints" / f"step-{STEPS:07d}" / "trainer_state.json").read_text())
    losses = np.asarray(state["losses"])
    assert len(losses) == STEPS
    assert losses[-10:].mean() < 0.9 * losses[:10].mean(), losses  # it trains

    card = (out / "README.md").read_text()
    assert '"processes": 2' in card, card  # the effective batch is per process times processes
    loaded = DepthFtPredictor.from_pretrained(out, device="cpu", processing_resolution=64)
    trained = load_file(next((out / "unet").glob("*.safetensors")))
    base_unet = load_file(next((Path(base) / "unet").glob("*.safetensors")))
    state_dict = loaded.runner.unet.state_dict()
    assert all(torch.equal(state_dict[k], trained[k]) for k in trained)
    assert any(not torch.equal(trained[k], base_unet[k]) for k in trained)  # the trained weights, not the base
    relative = loaded.predict(np.zeros((72, 96, 3), np.uint8) + 100).relative
    assert relative is not None and np.isfinite(relative).all()
