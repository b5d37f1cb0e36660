"""The IBSI compliance report of the feature set, on the IBSI-1 digital phantom."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from metorigin.imaging.ibsi import compliance_table, report_markdown
from metorigin.imaging.radiomics import expected_features, make_extractor

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table():
    return compliance_table().set_index("pyradiomics_feature")


def test_every_feature_we_extract_has_a_verdict(table):
    assert sorted(table.index) == expected_features(make_extractor())
    verdicts = table["verdict"].str.split(":").str[0].value_counts().to_dict()
    assert verdicts.get("outside tolerance", 0) == 0, table[table["verdict"] == "outside tolerance"]
    assert verdicts["within tolerance"] >= 99
    assert set(table.loc[table["verdict"] == "no IBSI counterpart"].index) == {
        "original_firstorder_TotalEnergy",
        "original_glcm_MCC",
        "original_shape_Maximum2DDiameterColumn",
        "original_shape_Maximum2DDiameterRow",
        "original_shape_Maximum2DDiameterSlice",
    }


def test_differences_by_definition_are_what_they_claim(table):
    kurtosis = table.loc["original_firstorder_Kurtosis"]
    assert kurtosis["metorigin_value"] - 3 == pytest.approx(kurtosis["reference"], abs=0.0015)
    n_voxels = table.loc["original_shape_VoxelVolume", "metorigin_value"] / 8.0  # 2 mm voxels
    for name in ("MinorAxisLength", "LeastAxisLength"):
        row = table.loc[f"original_shape_{name}"]
        assert row["metorigin_value"] * math.sqrt(n_voxels / (n_voxels - 1)) == pytest.approx(
            row["reference"], abs=row["tolerance"]
        )


def test_committed_report_matches_the_code(table):
    committed = (REPO / "docs" / "ibsi_compliance.md").read_text()
    assert committed == report_markdown(table.reset_index()), "run `metorigin ibsi-report` and commit the result"
