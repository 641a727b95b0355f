"""The CPU thread budget of the network (parameter cpu_threads).

torch uses one intra-op thread per core by default, which leaves no core free for the rest of the node while a
forward runs on the CPU: the middleware's receive threads, the executor storing input messages, publishing. It
was measured whether that makes input floods expensive (BENCHMARKS.md, "Input flood"; 2-core machine, inputs
at 4x the processing rate): it does not here. With 2 threads the output rate under the flood stayed 0.92-1.09
of the relaxed rate, as with 1 thread (0.95-1.06), and 2 threads gave the higher rate in both phases (~2.3-2.9 vs
~1.9-2.4 outputs/s); the flood's own cost was not measurable in the node's CPU time. So `auto` uses every core
the process may run on (its affinity mask: taskset, a container's cpuset) for a CPU forward; a smaller value is
for leaving cores to other processes of the robot.
A CUDA forward needs one CPU thread to launch its kernels; the CPU work around it is numpy/OpenCV, not torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def available_cpus() -> int:
    """The cores this process may run on (its affinity mask, e.g. under taskset or a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def torch_thread_count(setting: int, device_type: str, cpus: int) -> int:
    """The intra-op thread count for the network: `setting` when > 0, else (auto) every available core for a
    CPU forward and one for a CUDA device."""
    if setting < 0:
        raise ValueError(f"cpu_threads must be >= 0 (0 = auto), got {setting}")
    if setting > 0:
        return setting
    return max(1, cpus) if device_type == "cpu" else 1


@dataclass(frozen=True)
class ThreadBudget:
    threads: int  # torch intra-op threads now
    interop_threads: int  # torch inter-op threads now
    interop_set: bool  # False when torch no longer allowed changing them (set once, before parallel work)
    cpus: int  # available cores

    def describe(self) -> str:
        text = f"{self.threads} torch threads of {self.cpus} cores"
        if not self.interop_set:
            text += f" (inter-op threads stay {self.interop_threads}: torch allows setting them only once)"
        return text


def apply_torch_threads(setting: int, device_type: str, cpus: int | None = None) -> ThreadBudget:
    """Set torch's intra-op (and, when still allowed, inter-op) thread counts for the network.

    Call before the models load: inter-op threads can be set only once per process, before any inter-op
    parallel work; later that call is skipped (reported in the result), the intra-op count applies anyway."""
    import torch

    cpus = available_cpus() if cpus is None else cpus
    threads = torch_thread_count(setting, device_type, cpus)
    if torch.get_num_threads() != threads:  # a reconfigure with the same budget leaves torch's pools alone
        torch.set_num_threads(threads)
    interop_set = True
    try:
        if torch.get_num_interop_threads() != threads:
            torch.set_num_interop_threads(threads)
    except RuntimeError:  # "cannot set number of interop threads after parallel work has started ..."
        interop_set = False
    return ThreadBudget(torch.get_num_threads(), torch.get_num_interop_threads(), interop_set, cpus)
