"""Bags over workers: a Ray actor pool (one model copy per actor, `num_gpus` per actor where the cluster has GPUs,
CPU actors otherwise), or this process alone (no Ray, or --address none).

An actor takes one whole bag at a time, so each camera's temporal state runs in stamp order within its bag;
bags run in parallel across actors. An actor that dies (a killed worker process, a lost node) is replaced by a
new one and its bag is given to the pool again, up to MAX_ATTEMPTS times; its partial outputs were never
published.

Workers report through their results (a bag's reason, counts and first messages), not their logs: their stdout and
stderr stay in Ray's session logs (/tmp/ray/session_latest/logs on each machine).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from depth_ft_ros.errors import DepthFtError
from depth_ft_ros.fleet.bagjob import BagResult, process_bag
from depth_ft_ros.fleet.settings import FleetSettings
from depth_ft_ros.fleet.sources import BagSource
from depth_ft_ros.fleet.store import OutputStore

MAX_ATTEMPTS = 3
WAIT_S = 1.0


@dataclass(frozen=True)
class EngineOptions:
    address: str = "local"  # local (a Ray instance started here), auto, ray://host:port, or none (no Ray)
    workers: int = 0  # actors; 0: one per GPU of the cluster, else one per cpus_per_worker CPUs
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = -1.0  # -1: 1 where the cluster has GPUs, else 0


class BagWorker:
    """One model copy, whole bags through it (a Ray actor, or used directly without Ray)."""

    def __init__(self, settings: FleetSettings, out_uri: str) -> None:
        from depth_ft_ros.model.networks import Models

        self.settings = settings
        self.store = OutputStore(out_uri)
        self.models = Models.load(settings.config())

    def process(self, source: BagSource) -> dict[str, Any]:
        from depth_ft_ros.frame.processor import FrameProcessor

        return process_bag(source, self.settings, self.store,
                           lambda config: FrameProcessor(self.models, config)).to_dict()

    def pid(self) -> int:
        return os.getpid()


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def run_in_process(sources: list[BagSource], settings: FleetSettings, out_uri: str,
                   on_result: Callable[[BagResult], None]) -> str:
    worker = BagWorker(settings, out_uri)
    for source in sources:
        on_result(BagResult(**worker.process(source)))
    return "this process, 1 worker"


def _pool_size(options: EngineOptions, resources: dict[str, float]) -> tuple[int, float]:
    gpus = resources.get("GPU", 0.0)
    per_gpu = options.gpus_per_worker if options.gpus_per_worker >= 0 else (1.0 if gpus > 0 else 0.0)
    if options.workers > 0:
        return options.workers, per_gpu
    if per_gpu > 0:
        return max(1, int(gpus / per_gpu)), per_gpu
    return max(1, int(resources.get("CPU", 1.0) / max(options.cpus_per_worker, 1.0))), per_gpu


def _creation_error(exc: Exception) -> str:
    """The error an actor's constructor raised, from Ray's report of the actor's death (its last error line)."""
    lines = [line.strip() for line in str(exc).splitlines() if "Error:" in line]
    if not lines:
        return str(exc).splitlines()[0]
    name, _, text = lines[-1].partition(": ")  # "depth_ft_ros.errors.ModelLoadError: parameter depth_model: ..."
    return text if name.endswith("Error") and " " not in name else lines[-1]


def run_on_ray(sources: list[BagSource], settings: FleetSettings, out_uri: str, options: EngineOptions,
               on_result: Callable[[BagResult], None], on_tick: Callable[[], None] | None = None) -> str:
    """Every source through a Ray actor pool; on_result for each bag as it finishes. Returns a description of
    the pool (for the run summary)."""
    import logging

    import ray
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    try:
        if options.address == "local":
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False)
        else:
            ray.init(address=options.address, logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:  # no cluster at that address, a local start refused (e.g. /dev/shm too small)
        raise DepthFtError(f"--address {options.address}: cannot start or reach Ray ({type(exc).__name__}: "
                           f"{exc})") from None
    try:
        count, gpus = _pool_size(options, ray.cluster_resources())
        count = min(count, len(sources)) or 1
        actor_class: Any = ray.remote(num_cpus=options.cpus_per_worker, num_gpus=gpus, max_restarts=0,
                                      max_task_retries=0)(BagWorker)
        actors = [actor_class.remote(settings, out_uri) for _ in range(count)]
        try:  # the models load in each actor: a wrong checkpoint fails here, once, not as lost workers per bag
            ray.get(actors[0].pid.remote())
        except RayActorError as exc:
            raise DepthFtError(f"the workers cannot start: {_creation_error(exc)}") from None
        queue: deque[tuple[BagSource, int]] = deque((s, 1) for s in sources)
        idle = deque(actors)
        running: dict[Any, tuple[Any, BagSource, int]] = {}
        while queue or running:
            while queue and idle:
                source, attempt = queue.popleft()
                actor = idle.popleft()
                running[actor.process.remote(source)] = (actor, source, attempt)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
            if on_tick is not None:
                on_tick()
            for ref in ready:
                actor, source, attempt = running.pop(ref)
                try:
                    result = BagResult(**ray.get(ref))
                    idle.append(actor)
                except (RayActorError, WorkerCrashedError) as exc:
                    # A new actor (calls wait while it loads its model) replaces the lost one; the bag goes again.
                    ray.kill(actor)
                    idle.append(actor_class.remote(settings, out_uri))
                    if attempt < MAX_ATTEMPTS:
                        queue.append((source, attempt + 1))
                        continue
                    result = BagResult(source.name, source.uri, "failed", reason=f"its worker was lost on each of "
                                       f"{attempt} attempt(s) ({type(exc).__name__})")
                except RayTaskError as exc:  # an error outside process_bag's own handling
                    idle.append(actor)
                    result = BagResult(source.name, source.uri, "failed",
                                       reason=f"worker error: {str(exc.cause or exc).splitlines()[0]}")
                result.attempts = attempt
                on_result(result)
        where = "local Ray" if options.address == "local" else f"Ray at {options.address}"
        return f"{where}, {count} actor(s), {gpus:g} GPU and {options.cpus_per_worker:g} CPU each"
    finally:
        ray.shutdown()
