"""Write a synthetic scan as a DICOM series, with the headers a CT scanner would set.

The acquisition metadata (kernel, slice thickness, phase in the series description) lives only in
the headers, so a generated cohort exercises the contract's "read it from DICOM when the CSV leaves
it empty" path. UIDs derive from the scan's seed: the same seed writes byte-identical headers.
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk
from pydicom.uid import generate_uid


def write_dicom_series(image: sitk.Image, folder: Path, spec) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid(entropy_srcs=[f"study-{spec.seed}"])
    series_uid = generate_uid(entropy_srcs=[f"series-{spec.seed}"])
    d = image.GetDirection()
    series_tags = {
        "0008|0060": "CT",
        "0008|0008": "ORIGINAL\\PRIMARY\\AXIAL",
        "0010|0010": spec.patient_id,  # the cohort pseudonym, never a name
        "0010|0020": spec.patient_id,
        "0020|000d": study_uid,
        "0020|000e": series_uid,
        "0008|103e": f"Abdomen {_phase_words(spec.contrast_phase)} {spec.slice_thickness_mm:g} {spec.kernel}",
        "0018|0050": f"{spec.slice_thickness_mm:g}",
        "0018|1210": spec.kernel,
        "0018|0010": "" if spec.contrast_phase == "native" else "Iomeprol",
        "0020|0037": "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
        "0028|1050": "40",
        "0028|1051": "400",
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        for tag, value in series_tags.items():
            plane.SetMetaData(tag, value)
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        plane.SetMetaData("0020|0032", "\\".join(f"{v:.4f}" for v in position))
        plane.SetMetaData("0020|0013", str(k + 1))
        plane.SetMetaData("0008|0018", generate_uid(entropy_srcs=[f"instance-{spec.seed}-{k}"]))
        writer.SetFileName(str(folder / f"{k + 1:04d}.dcm"))
        writer.Execute(plane)


def _phase_words(phase: str) -> str:
    return {"portal_venous": "PV portal venous", "arterial": "arterial", "delayed": "delayed", "native": "native"}.get(
        phase, phase
    )
