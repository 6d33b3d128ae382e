"""One frame's outputs: overlay, masks, crop (and, for DICOM inputs, SEG and SC), and the
database row that records them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from cervixbatch.config import Config
from cervixbatch.errors import DicomOutputSkipped
from cervixbatch.imaging.frames import DecodedInput, Frame, InputKind
from cervixbatch.model.loaded import Stages
from cervixbatch.outputs.outbox import FrameOutputs, Outbox
from cervixbatch.outputs.overlay import draw_overlay, overlay_size
from cervixbatch.outputs.staging import Stage
from cervixbatch.segmentation.steps import Step
from cervixbatch.segmentation.two_stage import FrameResult
from cervixbatch.store.schema import ForwardStatus, Result

__all__ = ["FrameWriter"]

log = structlog.get_logger(__name__)


class FrameWriter:
    """Writes what the pipeline found in one frame into the outbox."""

    def __init__(self, config: Config, outbox: Outbox, stages: Stages) -> None:
        self.config = config
        self.outbox = outbox
        self.stages = stages

    def write(
        self,
        decoded: DecodedInput,
        index: int,
        result: FrameResult,
        *,
        stage: Stage,
    ) -> FrameOutputs:
        """Renders and writes the frame's files into the attempt's staging folder (the
        commit publishes them); raises OutputError when the disk refuses.

        A DICOM input's SEG and SC are built from the header parsed from the same bytes as
        the frames; when they cannot be built the frame's outputs say why, and stand.
        """
        frame: Frame = decoded.frames[index]
        label = (
            f"cervix {result.cervix_fraction:.0%}  lesion {result.lesion_fraction:.0%} of cervix"
            if result.cervix_found
            else "no cervix found"
        )
        max_side = self.config.output.overlay_max_side
        overlay = draw_overlay(
            frame.rgb, *_masks_for_overlay(frame, result, max_side), max_side=max_side, label=label
        )
        folder = stage.frame_dir(index, len(decoded.frames))
        outputs = self.outbox.write_frame(
            folder,
            cervix_mask=result.cervix_mask,
            lesion_mask=result.lesion_mask,
            overlay_rgb=overlay,
            crop_rgb=result.crop,
            jpeg_quality=self.config.output.jpeg_quality,
        )
        header = decoded.dicom_header
        if decoded.kind is InputKind.DICOM and self.config.dicom.outputs and header is not None:
            outputs = self._write_dicom(
                header,
                frame=frame,
                result=result,
                overlay=overlay,
                folder=folder,
                outputs=outputs,
            )
        return outputs

    def _write_dicom(
        self,
        header: Any,
        *,
        frame: Frame,
        result: FrameResult,
        overlay: npt.NDArray[np.uint8],
        folder: Path,
        outputs: FrameOutputs,
    ) -> FrameOutputs:
        """Results back into the study: a DICOM SEG and the overlay as Secondary Capture."""
        from cervixbatch.outputs.dicom import write_dicom_results

        try:
            dicom = write_dicom_results(
                header,
                frame.index,
                cervix_mask=result.cervix_mask,
                lesion_mask=result.lesion_mask,
                overlay_rgb=overlay,
                folder=folder,
                model_versions={
                    "cervix": self.stages.cervix_version,
                    "lesion": self.stages.lesion_version,
                },
            )
        except DicomOutputSkipped as exc:
            return dataclasses.replace(
                outputs, dicom_skipped=exc.reason, dicom_skipped_detail=exc.detail
            )
        outputs = dataclasses.replace(
            outputs,
            dicom_seg=dicom.seg,
            dicom_sc=dicom.sc,
            dicom_seg_uid=dicom.seg_sop_instance_uid,
            dicom_sc_uid=dicom.sc_sop_instance_uid,
        )
        return _with_sr(
            header,
            frame.index,
            result=result,
            seg=dicom.seg,
            folder=folder,
            outputs=outputs,
            stages=self.stages,
        )

    def result_row(
        self, frame: int, result: FrameResult, outputs: FrameOutputs, run: int = 1
    ) -> Result:
        """The database row of one frame (its input id is set when the batch commits)."""
        height, width = result.cervix_mask.shape
        box = result.box.as_tuple() if result.box else (None, None, None, None)
        return Result(
            run=run,
            frame=frame,
            width=width,
            height=height,
            cervix_found=result.cervix_found,
            cervix_fraction=result.cervix_fraction,
            lesion_fraction=result.lesion_fraction,
            box_x0=box[0],
            box_y0=box[1],
            box_x1=box[2],
            box_y1=box[3],
            cervix_mask_path=str(outputs.cervix_mask),
            lesion_mask_path=str(outputs.lesion_mask),
            overlay_path=str(outputs.overlay),
            crop_path=str(outputs.crop) if outputs.crop else None,
            dicom_seg_path=str(outputs.dicom_seg) if outputs.dicom_seg else None,
            dicom_sc_path=str(outputs.dicom_sc) if outputs.dicom_sc else None,
            dicom_sr_path=str(outputs.dicom_sr) if outputs.dicom_sr else None,
            dicom_sr_uid=outputs.dicom_sr_uid,
            dicom_seg_uid=outputs.dicom_seg_uid,
            dicom_sc_uid=outputs.dicom_sc_uid,
            dicom_skipped=outputs.dicom_skipped,
            dicom_skipped_detail=outputs.dicom_skipped_detail,
            forward_status=ForwardStatus.PENDING
            if outputs.dicom_seg and self.config.dicom.forward
            else None,
            stow_status=ForwardStatus.PENDING
            if outputs.dicom_seg and self.config.dicomweb.stow_url
            else None,
            cervix_model=self.stages.cervix_version,
            lesion_model=self.stages.lesion_version,
            precision=self.stages.precision,
            runtime=self.stages.runtime,
            stage1_ms=result.timings_ms.get(Step.STAGE1, 0.0),
            stage2_ms=result.timings_ms.get(Step.STAGE2, 0.0),
        )


def _with_sr(
    header: Any,
    frame: int,
    *,
    result: FrameResult,
    seg: Path,
    folder: Path,
    outputs: FrameOutputs,
    stages: Stages,
) -> FrameOutputs:
    """The measurements as a DICOM SR beside the SEG; without it (highdicom refused) the
    SEG and SC stand and a warning says why."""
    from cervixbatch.outputs.dicom_sr import write_dicom_sr

    try:
        sr = write_dicom_sr(
            header,
            seg,
            frame,
            cervix_mask=result.cervix_mask,
            lesion_mask=result.lesion_mask,
            folder=folder,
            model_versions={"cervix": stages.cervix_version, "lesion": stages.lesion_version},
        )
    except DicomOutputSkipped as exc:
        log.warning("dicom_sr_skipped", reason=exc.reason, detail=exc.detail)
        return outputs
    return dataclasses.replace(outputs, dicom_sr=sr.path, dicom_sr_uid=sr.sop_instance_uid)


def _masks_for_overlay(
    frame: Frame, result: FrameResult, max_side: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """The masks at the overlay's size: drawn there from the model grids when the overlay
    is smaller than the photo (~2 ms instead of ~20 ms for shrinking two 12.8 MP masks)."""
    height, width = frame.rgb.shape[:2]
    size = overlay_size(height, width, max_side)
    full_h, full_w = result.cervix_mask.shape
    if result.source is None or size == (full_w, full_h):
        return result.cervix_mask, result.lesion_mask
    return result.source.draw(size)
