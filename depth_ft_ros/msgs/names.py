"""The node's topic names, relative to its namespace (remap them like any ROS name). With several cameras each
camera C has the same topics under C/ (of_camera), except a shared sparse_points.

Image outputs pair with their camera_info by image_transport's rule (getCameraInfoTopic): the camera_info of an
image at `ns/X` is `ns/camera_info`. So every image that shares the depth image's geometry lives beside
`depth/camera_info`, and the normals image beside `normals/camera_info`; depth_image_proc, RViz's camera displays
and every CameraSubscriber find them without remapping.
"""

from __future__ import annotations


def of_camera(camera: str, topic: str) -> str:
    """A topic of one camera of several (`cameras` parameter): front/image, front/depth/image, ...; the topic
    itself for the single camera (camera "")."""
    return f"{camera}/{topic}" if camera else topic

# Inputs.
IMAGE = "image"
IMAGE_COMPRESSED = "image/compressed"
CAMERA_INFO = "camera_info"
SPARSE_POINTS = "sparse_points"
SPARSE_DEPTH = "sparse_depth"

# Outputs.
DEPTH_IMAGE = "depth/image"  # 32FC1 metres (REP 118)
DEPTH_CAMERA_INFO = "depth/camera_info"
DEPTH_RELATIVE = "depth/relative"  # 32FC1 affine-invariant map in [0, 1]
DEPTH_COLORIZED = "depth/colorized"  # bgr8, for people
DEPTH_CONFIDENCE = "depth/confidence"  # 32FC1 in [0, 1]: how far depth/image can be trusted, per pixel
NORMALS_IMAGE = "normals/image"  # 32FC3 unit vectors, optical frame
NORMALS_CAMERA_INFO = "normals/camera_info"
NORMALS_COLORIZED = "normals/colorized"  # bgr8, for people
POINTS = "points"  # organized PointCloud2 (REP 118 back-projection of depth/image)

# Each image output and the camera_info beside it.
CAMERA_INFO_OF = {
    DEPTH_IMAGE: DEPTH_CAMERA_INFO,
    DEPTH_RELATIVE: DEPTH_CAMERA_INFO,
    DEPTH_COLORIZED: DEPTH_CAMERA_INFO,
    DEPTH_CONFIDENCE: DEPTH_CAMERA_INFO,
    NORMALS_IMAGE: NORMALS_CAMERA_INFO,
    NORMALS_COLORIZED: NORMALS_CAMERA_INFO,
}
