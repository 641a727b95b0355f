"""Why a frame produced no output, as a typed exception: the stage that refused it and the drop reason.

Every host (the node, the replay, a batch engine) counts a FrameFailure under its reason and names its stage in the
message, so the same fault reads the same everywhere.
"""

from __future__ import annotations

from depth_ft_ros.enums import TextEnum


class Stage(TextEnum):
    """The steps of one frame, in the order they run (assembly in msgs/frame_inputs.py, the rest in
    frame/processor.py). A failure names the stage it happened in."""

    IMAGE = "image"  # image message -> RGB
    IMAGE_STAMP = "image_stamp"  # stamp checks against the clock
    CAMERA_INFO = "camera_info"  # paired camera_info -> camera of this image
    IMAGE_FRAME_ID = "image_frame_id"  # the outputs' frame
    SPARSE_INPUT = "sparse_input"  # sparse message -> points in the camera frame
    CHECK = "check"  # FrameProcessor.check_inputs
    NETWORKS = "networks"  # shared forward
    SPARSE = "sparse"  # points -> pixels
    ALIGN = "align"
    CONFIDENCE = "confidence"
    RECTIFY = "rectify"
    CLOUD = "cloud"
    PUBLISH = "publish"  # messages built and sent (the host's)


_INPUT_STAGES = (Stage.IMAGE, Stage.IMAGE_STAMP, Stage.CAMERA_INFO, Stage.IMAGE_FRAME_ID)


class FailureKind(TextEnum):
    """How a failed frame is counted (NodeStats.drop)."""

    BAD_INPUT = "bad_input"  # the input's fault: named, counted, the host goes on
    NO_CAMERA_INFO = "no_camera_info"  # nothing to pair the image with within sync_tolerance
    INTERNAL_ERROR = "internal_error"  # not the input's fault: logged with its traceback


class FrameFailure(Exception):
    """One camera's frame that produced no output. `cause` keeps the original exception (and its traceback)."""

    def __init__(self, kind: FailureKind, stage: Stage, message: str, *, camera_name: str = "",
                 stamp_ns: int | None = None, cause: BaseException | None = None, reported: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.stage = stage
        self.message = message
        self.camera_name = camera_name
        self.stamp_ns = stamp_ns
        self.cause = cause
        self.reported = reported  # already reported when its input arrived (a refused camera_info): count only

    @property
    def warn_kind(self) -> str:
        """The counter of a bad input, named after the input: bad_image, bad_image_stamp, bad_camera_info,
        bad_image_frame_id; bad_frame for what a later stage refused."""
        if self.stage in _INPUT_STAGES:
            return f"bad_{self.stage}"
        return "bad_image" if self.stage is Stage.CHECK else "bad_frame"


__all__ = ["FailureKind", "FrameFailure", "Stage"]
