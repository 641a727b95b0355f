"""Why a frame produced no output, as a typed exception: the stage that refused it and the drop reason.

Every host (the node, the replay, a batch engine) counts a FrameFailure under its reason and names its stage in the
message, so the same fault reads the same everywhere.
"""

from __future__ import annotations

from depth_ft_ros.enums import BadInput, DropReason, TextEnum


class Stage(TextEnum):
    """The steps of one frame, in the order they run (assembly in msgs/frame_inputs.py, the rest in
    frame/processor.py). A failure names the stage it happened in."""

    IMAGE = "image"  # image message -> RGB
    IMAGE_STAMP = "image_stamp"  # stamp checks against the clock
    CAMERA_INFO = "camera_info"  # paired camera_info -> camera of this image
    IMAGE_FRAME_ID = "image_frame_id"  # the outputs' frame
    CHECK = "check"  # FrameProcessor.check_inputs
    NETWORKS = "networks"  # shared forward
    SPARSE = "sparse"  # points -> pixels
    ALIGN = "align"
    CONFIDENCE = "confidence"
    RECTIFY = "rectify"
    CLOUD = "cloud"
    PUBLISH = "publish"  # messages built and sent (the host's)


# The bad-input counter of a refusal, named after the input (a later stage's refusal: the frame as a whole).
_BAD_INPUT_OF_STAGE = {Stage.IMAGE: BadInput.IMAGE, Stage.IMAGE_STAMP: BadInput.IMAGE_STAMP,
                       Stage.CAMERA_INFO: BadInput.CAMERA_INFO, Stage.IMAGE_FRAME_ID: BadInput.IMAGE_FRAME_ID,
                       Stage.CHECK: BadInput.IMAGE}


class FrameFailure(Exception):
    """One camera's frame that produced no output, counted under `kind` (DropReason.BAD_INPUT, NO_CAMERA_INFO or
    INTERNAL_ERROR). `cause` keeps the original exception (and its traceback)."""

    def __init__(self, kind: DropReason, stage: Stage, message: str, *, camera_name: str = "",
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
    def warn_kind(self) -> BadInput:
        """The counter of a bad input, named after the input that was refused."""
        return _BAD_INPUT_OF_STAGE.get(self.stage, BadInput.FRAME)


__all__ = ["FrameFailure", "Stage"]
