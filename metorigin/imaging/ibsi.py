"""IBSI compliance of the feature set: our pyradiomics settings on the IBSI-1 digital phantom.

For each feature metorigin extracts, the report gives its IBSI tag, the consensus reference value
and tolerance, our value, and a verdict. The phantom is extracted with `metorigin/imaging/radiomics_params.yaml`
except `binWidth: 1`, because IBSI's phantom protocol uses the phantom's integer grey levels as
they are (no re-discretisation); with bin width 1 and minimum 1, pyradiomics' bins equal them.

A value matches when it equals the reference after rounding to the reference's three significant
digits, or lies within the stated tolerance. Where pyradiomics defines a feature differently from
IBSI on purpose, the row says so instead of hiding the difference.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from metorigin.imaging.radiomics import PARAMS_FILE, extract, make_extractor, pyradiomics_version

PHANTOM_DIR = Path(__file__).with_name("ibsi_phantom")

# pyradiomics feature -> IBSI tag (suffix and family follow from the class: GLCM and GLRLM are
# averaged over the 13 3-D directions in pyradiomics, i.e. IBSI's "3D, averaged").
_FIRSTORDER = {
    "10Percentile": "stat_p10",
    "90Percentile": "stat_p90",
    "Energy": "stat_energy",
    "Entropy": "ih_entropy",
    "InterquartileRange": "stat_iqr",
    "Kurtosis": "stat_kurt",
    "Maximum": "stat_max",
    "Mean": "stat_mean",
    "MeanAbsoluteDeviation": "stat_mad",
    "Median": "stat_median",
    "Minimum": "stat_min",
    "Range": "stat_range",
    "RobustMeanAbsoluteDeviation": "stat_rmad",
    "RootMeanSquared": "stat_rms",
    "Skewness": "stat_skew",
    "TotalEnergy": None,
    "Uniformity": "ih_uniformity",
    "Variance": "stat_var",
}
_SHAPE = {
    "Elongation": "morph_pca_elongation",
    "Flatness": "morph_pca_flatness",
    "LeastAxisLength": "morph_pca_least_axis",
    "MajorAxisLength": "morph_pca_maj_axis",
    "MinorAxisLength": "morph_pca_min_axis",
    "Maximum2DDiameterColumn": None,
    "Maximum2DDiameterRow": None,
    "Maximum2DDiameterSlice": None,
    "Maximum3DDiameter": "morph_diam",
    "MeshVolume": "morph_volume",
    "Sphericity": "morph_sphericity",
    "SurfaceArea": "morph_area_mesh",
    "SurfaceVolumeRatio": "morph_av",
    "VoxelVolume": "morph_vol_approx",
}
_GLCM = {
    "Autocorrelation": "auto_corr",
    "ClusterProminence": "clust_prom",
    "ClusterShade": "clust_shade",
    "ClusterTendency": "clust_tend",
    "Contrast": "contrast",
    "Correlation": "corr",
    "DifferenceAverage": "diff_avg",
    "DifferenceEntropy": "diff_entr",
    "DifferenceVariance": "diff_var",
    "Id": "inv_diff",
    "Idm": "inv_diff_mom",
    "Idmn": "inv_diff_mom_norm",
    "Idn": "inv_diff_norm",
    "Imc1": "info_corr1",
    "Imc2": "info_corr2",
    "InverseVariance": "inv_var",
    "JointAverage": "joint_avg",
    "JointEnergy": "energy",
    "JointEntropy": "joint_entr",
    "MCC": None,
    "MaximumProbability": "joint_max",
    "SumAverage": "sum_avg",
    "SumEntropy": "sum_entr",
    "SumSquares": "joint_var",
}
_GLRLM = {
    "GrayLevelNonUniformity": "glnu",
    "GrayLevelNonUniformityNormalized": "glnu_norm",
    "GrayLevelVariance": "gl_var",
    "HighGrayLevelRunEmphasis": "hgre",
    "LongRunEmphasis": "lre",
    "LongRunHighGrayLevelEmphasis": "lrhge",
    "LongRunLowGrayLevelEmphasis": "lrlge",
    "LowGrayLevelRunEmphasis": "lgre",
    "RunEntropy": "rl_entr",
    "RunLengthNonUniformity": "rlnu",
    "RunLengthNonUniformityNormalized": "rlnu_norm",
    "RunPercentage": "r_perc",
    "RunVariance": "rl_var",
    "ShortRunEmphasis": "sre",
    "ShortRunHighGrayLevelEmphasis": "srhge",
    "ShortRunLowGrayLevelEmphasis": "srlge",
}
_GLSZM = {
    "GrayLevelNonUniformity": "glnu",
    "GrayLevelNonUniformityNormalized": "glnu_norm",
    "GrayLevelVariance": "gl_var",
    "HighGrayLevelZoneEmphasis": "hgze",
    "LargeAreaEmphasis": "lze",
    "LargeAreaHighGrayLevelEmphasis": "lzhge",
    "LargeAreaLowGrayLevelEmphasis": "lzlge",
    "LowGrayLevelZoneEmphasis": "lgze",
    "SizeZoneNonUniformity": "zsnu",
    "SizeZoneNonUniformityNormalized": "zsnu_norm",
    "SmallAreaEmphasis": "sze",
    "SmallAreaHighGrayLevelEmphasis": "szhge",
    "SmallAreaLowGrayLevelEmphasis": "szlge",
    "ZoneEntropy": "zs_entr",
    "ZonePercentage": "z_perc",
    "ZoneVariance": "zs_var",
}
_GLDM = {
    "DependenceEntropy": "dc_entr",
    "DependenceNonUniformity": "dcnu",
    "DependenceNonUniformityNormalized": "dcnu_norm",
    "DependenceVariance": "dc_var",
    "GrayLevelNonUniformity": "glnu",
    "GrayLevelVariance": "gl_var",
    "HighGrayLevelEmphasis": "hgce",
    "LargeDependenceEmphasis": "hde",
    "LargeDependenceHighGrayLevelEmphasis": "hdhge",
    "LargeDependenceLowGrayLevelEmphasis": "hdlge",
    "LowGrayLevelEmphasis": "lgce",
    "SmallDependenceEmphasis": "lde",
    "SmallDependenceHighGrayLevelEmphasis": "ldhge",
    "SmallDependenceLowGrayLevelEmphasis": "ldlge",
}
_NGTDM = {
    "Busyness": "busyness",
    "Coarseness": "coarseness",
    "Complexity": "complexity",
    "Contrast": "contrast",
    "Strength": "strength",
}

IBSI_TAGS: dict[str, str | None] = {
    **{f"original_firstorder_{k}": v for k, v in _FIRSTORDER.items()},
    **{f"original_shape_{k}": v for k, v in _SHAPE.items()},
    **{f"original_glcm_{k}": v and f"cm_{v}_3D_avg" for k, v in _GLCM.items()},
    **{f"original_glrlm_{k}": v and f"rlm_{v}_3D_avg" for k, v in _GLRLM.items()},
    **{f"original_glszm_{k}": v and f"szm_{v}_3D" for k, v in _GLSZM.items()},
    **{f"original_gldm_{k}": v and f"ngl_{v}_3D" for k, v in _GLDM.items()},
    **{f"original_ngtdm_{k}": v and f"ngt_{v}_3D" for k, v in _NGTDM.items()},
}

# Differences that pyradiomics documents as deliberate, with what to do to compare.
_PCA_NOTE = (
    "pyradiomics takes the PCA eigenvalues of the voxel-coordinate covariance normalised by N, "
    "IBSI by N - 1; times sqrt(N / (N - 1)) the values agree"
)
BY_DEFINITION = {
    "original_firstorder_Kurtosis": "pyradiomics reports kurtosis, IBSI excess kurtosis (kurtosis - 3)",
    "original_shape_MinorAxisLength": _PCA_NOTE,
    "original_shape_LeastAxisLength": _PCA_NOTE,
}
NO_IBSI_FEATURE = "no IBSI counterpart"


def _rounds_to(value: float, reference: float, digits: int = 3) -> bool:
    if reference == 0:
        return abs(value) < 5e-4
    scale = 10 ** (digits - 1 - math.floor(math.log10(abs(reference))))
    return round(value * scale) == round(reference * scale)


def compliance_table(params_file: Path = PARAMS_FILE) -> pd.DataFrame:
    """One row per feature of our settings, with the IBSI reference and a verdict."""
    extractor = make_extractor(params_file)
    extractor.settings["binWidth"] = 1
    image = sitk.ReadImage(str(PHANTOM_DIR / "phantom.nii.gz"), sitk.sitkFloat64)
    mask = sitk.ReadImage(str(PHANTOM_DIR / "mask.nii.gz"))
    ours = extract(extractor, image, mask)
    reference = pd.read_csv(PHANTOM_DIR / "ibsi_1_reference_values_digital_phantom.csv", encoding="utf-8-sig")
    reference = reference.drop_duplicates("tag").set_index("tag")
    rows = []
    for name in sorted(ours):
        tag = IBSI_TAGS.get(name)
        value = ours[name]
        row = {
            "pyradiomics_feature": name,
            "ibsi_tag": tag,
            "reference": None,
            "tolerance": None,
            "metorigin_value": value,
        }
        if tag is None or tag not in reference.index:
            row["verdict"] = NO_IBSI_FEATURE
        else:
            ref = reference.loc[tag]
            row["reference"], row["tolerance"] = float(ref["reference value"]), float(ref["tolerance"])
            if abs(value - row["reference"]) <= row["tolerance"] or _rounds_to(value, row["reference"]):
                row["verdict"] = "within tolerance"
            elif name in BY_DEFINITION:
                row["verdict"] = f"differs by definition: {BY_DEFINITION[name]}"
            else:
                row["verdict"] = "outside tolerance"
        rows.append(row)
    return pd.DataFrame(rows)


def report_markdown(table: pd.DataFrame) -> str:
    counts = table["verdict"].str.split(":").str[0].value_counts()
    lines = [
        "# IBSI compliance of the metorigin feature set",
        "",
        "Generated by `metorigin ibsi-report` (do not edit by hand). pyradiomics "
        f"{pyradiomics_version()}, settings `metorigin/imaging/radiomics_params.yaml` with `binWidth: 1` as IBSI's "
        "digital-phantom protocol requires (the phantom's integer grey levels are used as they are).",
        "Reference values: IBSI chapter 1 consensus for the digital phantom (CC BY 4.0). A value is within "
        "tolerance when it lies within the stated tolerance or rounds to the reference's three significant digits.",
        "",
        "Summary: " + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) + f" (of {len(table)} features).",
        "",
        "| pyradiomics feature | IBSI tag | reference | tolerance | metorigin | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        ref = "" if r.reference is None or pd.isna(r.reference) else f"{r.reference:g}"
        tol = "" if r.tolerance is None or pd.isna(r.tolerance) else f"{r.tolerance:g}"
        lines.append(
            f"| {r.pyradiomics_feature} | {r.ibsi_tag or ''} | {ref} | {tol} | {r.metorigin_value:.4g} | {r.verdict} |"
        )
    return "\n".join(lines) + "\n"
