"""Patient characteristics drawn to match Table 1 of the study.

Categorical counts are allocated, not sampled: at scale 1.0 the generated cohort reproduces the
table's counts exactly, and at other scales the proportions as closely as whole patients allow.
"""

from __future__ import annotations

import numpy as np

# Table 1: counts per class (colorectal n=47, pancreatic n=31).
TABLE1 = {
    "colorectal": {
        "n": 47,
        "age_median": 65.79,
        "age_iqr": (56.99, 74.62),
        "sex": {"F": 17, "M": 30},
        "t_stage": {"T1": 2, "T2": 4, "T3": 24, "T4": 15, "Tx": 2},
        "n_stage": {"N0": 8, "N1": 18, "N2": 20, "Nx": 1},
        "lesions_per_patient": 9.25,
        "lesion_mean_hu": 45.89,
        "tumor_burden": 0.098,
        "liver_mean_hu": 91.13,
    },
    "pancreatic": {
        "n": 31,
        "age_median": 65.39,
        "age_iqr": (56.87, 75.08),
        "sex": {"F": 16, "M": 15},
        "t_stage": {"T1": 1, "T2": 3, "T3": 6, "T4": 19, "Tx": 2},
        "n_stage": {"N0": 6, "N1": 11, "N2": 14},
        "lesions_per_patient": 27.77,
        "lesion_mean_hu": 44.93,
        "tumor_burden": 0.067,
        "liver_mean_hu": 86.35,
    },
}


def allocate(counts: dict[str, int], n: int) -> list[str]:
    """`n` category labels in the proportions of `counts` (largest-remainder rounding), unshuffled."""
    total = sum(counts.values())
    exact = {k: v * n / total for k, v in counts.items()}
    whole = {k: int(np.floor(v)) for k, v in exact.items()}
    for key in sorted(exact, key=lambda k: (whole[k] - exact[k], k))[: n - sum(whole.values())]:
        whole[key] += 1
    return [k for k, v in whole.items() for _ in range(v)]


def sample_patients(site: str, n: int, rng: np.random.Generator) -> list[dict]:
    """Demographic records for `n` patients of one primary site."""
    spec = TABLE1[site]
    sexes = rng.permutation(allocate(spec["sex"], n))
    t_stages = rng.permutation(allocate(spec["t_stage"], n))
    n_stages = rng.permutation(allocate(spec["n_stage"], n))
    low, high = spec["age_iqr"]
    ages = rng.normal(spec["age_median"], (high - low) / 1.349, size=n).clip(28, 92)
    return [
        {
            "primary_site": site,
            "age": round(float(a), 1),
            "sex": str(s),
            "t_stage": str(t),
            "n_stage": str(ns),
            "m_stage": "M1",
        }
        for a, s, t, ns in zip(ages, sexes, t_stages, n_stages)
    ]
