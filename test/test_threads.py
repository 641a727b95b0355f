"""The network's CPU thread budget (parameter cpu_threads): the count chosen for a machine, and that torch
really runs with it. torch's thread settings are process-wide, so they are checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from depth_ft_ros.model.threads import torch_thread_count


@pytest.mark.parametrize("cpus", [1, 2, 7, 64])
def test_auto_uses_every_available_core_for_a_cpu_forward(cpus: int) -> None:
    assert torch_thread_count(0, "cpu", cpus) == cpus


def test_explicit_setting_wins_and_cuda_needs_one_thread() -> None:
    assert torch_thread_count(2, "cpu", 2) == 2
    assert torch_thread_count(3, "cuda", 16) == 3
    assert torch_thread_count(0, "cuda", 16) == 1
    with pytest.raises(ValueError, match="cpu_threads must be >= 0"):
        torch_thread_count(-1, "cpu", 4)


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_available_cpus_follows_the_affinity_mask() -> None:
    """Under taskset / a cpuset the process may use fewer cores than os.cpu_count() reports."""
    got = _run("import json, os\n"
               "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
               "from depth_ft_ros.model.threads import available_cpus\n"
               "print(json.dumps({'cpus': available_cpus()}))")
    assert got == {"cpus": 1}


def test_apply_sets_torch_threads_and_reports_a_late_interop_change() -> None:
    got = _run("import json, torch\n"
               "from depth_ft_ros.model.threads import apply_torch_threads\n"
               "first = apply_torch_threads(0, 'cpu', cpus=4)\n"
               "torch.ones(256, 256) @ torch.ones(256, 256)\n"
               "second = apply_torch_threads(2, 'cpu', cpus=4)\n"
               "print(json.dumps({'first': [first.threads, first.interop_threads, first.interop_set],\n"
               "                  'second': [second.threads, second.interop_set],\n"
               "                  'torch': torch.get_num_threads(), 'text': second.describe()}))")
    assert got["first"] == [4, 4, True]  # auto on 4 cores
    assert got["second"] == [2, False]  # intra-op changed; inter-op may be set only once per process
    assert got["torch"] == 2
    assert "inter-op threads stay 4" in got["text"]
