"""Imaging steps as pure functions: segmentation alignment, lesions, radiomics crops, CNN slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from metorigin.core.errors import ScanProcessingError
from metorigin.core.study import SliceSettings
from metorigin.imaging import radiomics, segmentation
from metorigin.imaging.lesions import label_components, measure_lesions
from metorigin.imaging.slices import crop_description, cut_lesion_slices, window

DATA = Path(__file__).parent / "data"


def _image(array: np.ndarray, spacing=(0.8, 0.8, 1.5), origin=(-50.0, 20.0, -300.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


@pytest.fixture(scope="module")
def lits():
    image = sitk.ReadImage(str(DATA / "lits" / "liver_ct.nii.gz"))
    result = segmentation.provided_segmentation(DATA / "lits" / "liver_mask.nii.gz", image, (1,), (2,), "LITS")
    return image, result.labels


def test_lits_has_13_tumour_pieces_measured_on_the_header_spacing(lits):
    image, labels = lits
    table, lesion_map = measure_lesions(image, labels, "LITS", "X")
    assert len(table) == 13 and lesion_map.max() == 13
    assert table["voxel_count"].sum() == 210
    voxel_ml = 0.664062 * 0.664062 * 5.0 / 1000  # the header's (wrong) spacing, taken as given
    assert table["volume_ml"].sum() == pytest.approx(210 * voxel_ml, rel=1e-5)
    assert list(table["lesion_id"]) == [f"LITS-L{n:03d}" for n in range(1, 14)]
    summary = segmentation.summarise(image, labels)
    assert summary["lesion_volume_ml"] == pytest.approx(210 * voxel_ml, rel=1e-5)


def test_lesion_numbering_is_raster_order_and_connectivity_is_a_setting():
    mask = np.zeros((4, 6, 6), dtype=bool)
    mask[3, 0, 0] = True  # first voxel latest in z: numbered last
    mask[0, 4, 4] = mask[1, 5, 5] = True  # touch only at a corner
    mask[1, 0, 2] = True
    components, n = label_components(mask, "face")
    assert n == 4
    assert components[0, 4, 4] == 1 and components[1, 0, 2] == 2 and components[1, 5, 5] == 3
    assert components[3, 0, 0] == 4
    assert label_components(mask, "vertex")[1] == 3
    with pytest.raises(ValueError, match="unknown connectivity"):
        label_components(mask, "diagonal")


def test_one_voxel_and_sub_5mm_lesions_are_kept_but_not_included():
    labels = np.zeros((10, 30, 30), dtype=np.uint8)
    labels[1:9, 2:28, 2:28] = 1
    labels[5, 10, 10] = 2  # one voxel of 0.8 x 0.8 x 1.5 mm
    labels[3:5, 20:23, 20:23] = 2  # 2.4 x 2.4 x 3 mm
    image = _image(np.full(labels.shape, 80, dtype=np.int16))
    table, _ = measure_lesions(image, _image(labels), "S1", "P1")
    assert len(table) == 2 and not table["included"].any()
    one = table.set_index("voxel_count").loc[1]
    assert one["max_diameter_mm"] == pytest.approx(1.5) and one["volume_ml"] == pytest.approx(0.8 * 0.8 * 1.5 / 1000)
    assert "under 5 mm" in one["exclusion_reason"]
    centroid = image.TransformIndexToPhysicalPoint((10, 10, 5))
    assert (one["centroid_x_mm"], one["centroid_y_mm"], one["centroid_z_mm"]) == pytest.approx(centroid)


def test_empty_lesion_mask_gives_zero_lesions():
    labels = np.zeros((5, 8, 8), dtype=np.uint8)
    labels[1:4, 2:6, 2:6] = 1
    table, lesion_map = measure_lesions(_image(np.zeros_like(labels, dtype=np.int16)), _image(labels), "S1", "P1")
    assert table.empty and list(table.columns)[:2] == ["lesion_id", "scan_id"] and lesion_map.max() == 0


def test_totalsegmentator_liver_label_5_without_lesion_label():
    image = sitk.ReadImage(str(DATA / "totalsegmentator" / "example_ct_sm.nii.gz"))
    seg_path = DATA / "totalsegmentator" / "example_seg.nii.gz"
    result = segmentation.provided_segmentation(seg_path, image, (5,), (), "TS")
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(seg_path)))
    summary = segmentation.summarise(image, result.labels)
    assert summary["liver_volume_ml"] == pytest.approx((raw == 5).sum() * 27 / 1000)
    assert summary["lesion_volume_ml"] == 0
    hu = sitk.GetArrayFromImage(image)
    assert summary["liver_parenchyma_mean_hu"] == pytest.approx(hu[raw == 5].mean())
    assert measure_lesions(image, result.labels, "TS", "X")[0].empty


def test_undeclared_labels_name_the_values_present():
    """The TotalSegmentator map read with the default labels (liver 1): label 1 is the spleen there,
    so it passes; a liver label that is absent altogether is refused with the values present."""
    image = sitk.ReadImage(str(DATA / "totalsegmentator" / "example_ct_sm.nii.gz"))
    with pytest.raises(ScanProcessingError, match=r"no liver label 200 \(label values present: 1, 2, 3, 4, 5"):
        segmentation.provided_segmentation(DATA / "totalsegmentator" / "example_seg.nii.gz", image, (200,), (2,), "TS")


def test_mask_on_a_flipped_grid_is_resampled_exactly_and_an_unrelated_grid_refused(lits):
    image, labels = lits
    flipped = sitk.DICOMOrient(labels, "RAI")
    assert flipped.GetDirection() != labels.GetDirection()
    aligned, resampled = segmentation.align_to_image(flipped, image, "LITS")
    assert resampled and np.array_equal(sitk.GetArrayFromImage(aligned), sitk.GetArrayFromImage(labels))
    unrelated = sitk.Image(labels)
    unrelated.SetOrigin([o + 40 for o in labels.GetOrigin()])
    with pytest.raises(ScanProcessingError, match="the mask spans"):
        segmentation.align_to_image(unrelated, image, "LITS")


def test_cropped_extraction_equals_full_image_extraction_on_real_ct(lits):
    """The speed trick changes nothing: every feature of every LiTS lesion agrees to 1e-9."""
    image, labels = lits
    table, lesion_map = measure_lesions(image, labels, "LITS", "X")
    extractor = radiomics.make_extractor()
    names = radiomics.expected_features(extractor)
    assert len(names) == 107
    compared = 0
    for lesion in table.to_dict("records"):
        crop = radiomics.crop_lesion(image, lesion_map, lesion, margin=1)
        full_mask = sitk.GetImageFromArray((lesion_map == lesion["lesion_number"]).astype(np.uint8))
        full_mask.CopyInformation(image)
        try:
            full = radiomics.extract(extractor, image, full_mask)
        except ValueError:  # a lesion flat in one dimension: pyradiomics refuses it either way
            with pytest.raises(ValueError):
                radiomics.extract(extractor, *crop.images())
            continue
        cropped = radiomics.extract(extractor, *crop.images())
        assert sorted(cropped) == names
        for name in names:
            a, b = full[name], cropped[name]
            assert (np.isnan(a) and np.isnan(b)) or abs(a - b) <= 1e-9 * max(1.0, abs(a)), (lesion["lesion_id"], name)
        compared += 1
    assert compared >= 4  # LiTS: 4 of its 13 pieces span at least two dimensions


def test_failed_lesions_get_nan_with_a_reason_never_a_silent_drop(lits):
    image, labels = lits
    table, lesion_map = measure_lesions(image, labels, "LITS", "X")
    crops = [radiomics.crop_lesion(image, lesion_map, r, 1) for r in table.to_dict("records")]
    results = radiomics.extract_lesions(crops, workers=2)
    names = radiomics.expected_features(radiomics.make_extractor())
    long = radiomics.long_table(table, results, names, "v")
    assert len(long) == 13 * 107 and long.groupby("lesion_id").size().eq(107).all()
    undefined = long[long["feature_value"].isna()]
    assert undefined["undefined_reason"].notna().all()
    assert long.loc[long["feature_value"].notna(), "undefined_reason"].isna().all()
    serial = radiomics.extract_lesions(crops, workers=1)
    assert {k: v[1] for k, v in serial.items()} == {k: v[1] for k, v in results.items()}


def test_slices_are_masked_windowed_square_and_one_per_lesion_slice():
    hu = np.full((12, 64, 64), 90, dtype=np.int16)
    labels = np.ones_like(hu, dtype=np.uint8)
    zz, yy, xx = np.mgrid[:12, :64, :64]
    ball = ((zz - 6) * 1.5) ** 2 + ((yy - 30) * 0.8) ** 2 + ((xx - 20) * 0.8) ** 2 < 6.0**2
    labels[ball] = 2
    hu[ball] = 175  # top of the W330/L10 window
    image = _image(hu)
    table, lesion_map = measure_lesions(image, _image(labels), "S1", "P1")
    stack, index = cut_lesion_slices(image, lesion_map, table, SliceSettings())
    z_extent = np.unique(np.nonzero(ball)[0])
    assert stack.shape == (len(z_extent), 224, 224) and stack.dtype == np.uint8
    assert list(index["slice_index"]) == list(z_extent) and list(index["array_row"]) == list(range(len(z_extent)))
    middle = stack[list(z_extent).index(6)]
    assert middle.max() == 255 and middle[0, 0] == 0 and middle[:, 0].max() == 0  # border is black
    assert index["lesion_area_px"].max() == ball[6].sum()
    assert index["crop_side_mm"].nunique() == 1
    assert window(np.array([-155.0, 10.0, 175.0]), 330, 10) == pytest.approx([0.0, 0.5, 1.0])


def test_a_fixed_field_keeps_lesion_size_visible_where_the_study_crop_scales_it_away():
    hu = np.full((5, 96, 96), 90, dtype=np.int16)
    labels = np.ones_like(hu, dtype=np.uint8)
    _, yy, xx = np.mgrid[:5, :96, :96]
    for centre, radius in (((25, 25), 4), ((65, 65), 12)):  # a small and a large lesion, on slices 1-3
        disc = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
        disc[[0, 4]] = False
        labels[disc], hu[disc] = 2, 175
    image = _image(hu)  # 0.8 mm pixels
    table, lesion_map = measure_lesions(image, _image(labels), "S1", "P1")

    def shown(settings: SliceSettings) -> tuple[list[float], object]:
        stack, index = cut_lesion_slices(image, lesion_map, table, settings)
        middle = index[index["slice_index"] == 2]
        return [float((stack[row] > 0).mean()) for row in middle["array_row"]], index

    study, _ = shown(SliceSettings(size=64))
    fixed, index = shown(SliceSettings(size=64, field_mm=40.0))
    assert study[1] / study[0] < 2  # scaled to fill: 9 times the area looks less than twice as large
    radius_ratio_squared = (12 / 4) ** 2
    assert fixed[1] / fixed[0] == pytest.approx(radius_ratio_squared, rel=0.25)  # the field keeps their areas
    assert index["crop_side_mm"].unique() == pytest.approx([40.0], abs=0.8)  # one pixel of 0.8 mm
    assert "fixed 40 mm field" in crop_description(SliceSettings(field_mm=40.0), 96)
