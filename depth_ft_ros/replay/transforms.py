"""Static extrinsics from a bag's /tf_static, for replays without tf2: T_target_source through the tf tree.

Direction (tf2's): an edge parent -> child holds the child's pose in the parent, i.e. it maps points from the
child frame into the parent frame. T_target_source maps points from `source` into `target`, the transform
tf2's lookup_transform(target, source) returns and the node's static_translation/static_rotation expect
(source = the sparse points' frame, target = the camera optical frame).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from depth_ft_ros.errors import InputError
from depth_ft_ros.replay.messages import StaticTransform


def _inverse(matrix: np.ndarray) -> np.ndarray:
    inv = np.eye(4)
    inv[:3, :3] = matrix[:3, :3].T
    inv[:3, 3] = -matrix[:3, :3].T @ matrix[:3, 3]
    return inv


def lookup_static(edges: list[StaticTransform], target_frame: str, source_frame: str) -> np.ndarray:
    """4x4 T_target_source through any chain of static edges (walked either way); InputError if unconnected."""
    target, source = target_frame.lstrip("/"), source_frame.lstrip("/")
    if target == source:
        return np.eye(4)
    # neighbour -> T_frame_neighbour (maps points from the neighbour into the frame)
    graph: dict[str, dict[str, np.ndarray]] = {}
    for edge in edges:
        graph.setdefault(edge.parent_frame, {})[edge.child_frame] = edge.matrix
        graph.setdefault(edge.child_frame, {})[edge.parent_frame] = _inverse(edge.matrix)
    # Breadth-first from the target; T_target_frame accumulates along the path.
    found: dict[str, np.ndarray] = {target: np.eye(4)}
    queue = deque([target])
    while queue:
        frame = queue.popleft()
        for neighbour, t_frame_neighbour in graph.get(frame, {}).items():
            if neighbour not in found:
                found[neighbour] = found[frame] @ t_frame_neighbour
                queue.append(neighbour)
    if source not in found:
        frames = sorted(graph) or ["(none)"]
        raise InputError(f"/tf_static has no chain from {source_frame!r} to {target_frame!r}; its frames: "
                         f"{', '.join(frames)}")
    return found[source]


