"""4x4 rigid transforms <-> (translation, quaternion [x, y, z, w]) as ROS messages and parameters carry them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation


def pose_to_matrix(translation_m: Sequence[float] | np.ndarray, quaternion_xyzw: Sequence[float] | np.ndarray
                   ) -> np.ndarray:
    """4x4 homogeneous transform; the quaternion (ROS order x, y, z, w) is normalised."""
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_quat(np.asarray(quaternion_xyzw, dtype=np.float64)).as_matrix()
    matrix[:3, 3] = np.asarray(translation_m, dtype=np.float64)
    return matrix


def matrix_to_pose(matrix: np.ndarray) -> tuple[list[float], list[float]]:
    """(translation [x, y, z] m, quaternion [x, y, z, w]) of a 4x4 transform."""
    translation = [float(v) for v in matrix[:3, 3]]
    quaternion = [float(v) for v in Rotation.from_matrix(matrix[:3, :3]).as_quat()]
    return translation, quaternion
