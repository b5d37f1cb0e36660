"""The benchmarks still run: each in its smoke mode (the same code on tiny inputs), as a subprocess.

Only that they finish and print a well-formed result line is checked, never how fast they are.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_smoke(script: str) -> list[str]:
    """Runs benchmarks/<script> --smoke from the repository root; returns its output lines."""
    env = dict(os.environ, GX_ANALYTICS_ENABLED="false", DAGSTER_DISABLE_TELEMETRY="true")
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        encoding="utf-8",
        timeout=300,
    )
    assert result.returncode == 0, f"{script} --smoke failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    lines = result.stdout.strip().splitlines()
    assert lines, f"{script} --smoke printed nothing:\n{result.stderr[-3000:]}"
    return lines


def result_values(line: str, keys: list[str]) -> dict[str, float]:
    """The `key=<number>` pairs of a result line; every key present, every number finite."""
    values = {key: float(value) for key, value in re.findall(r"(\w+)=(\S+)", line)}
    assert list(values) == keys, line
    assert all(math.isfinite(v) for v in values.values()), line
    return values


@pytest.mark.slow
def test_radiomics_throughput_smoke():
    values = result_values(
        run_smoke("radiomics_throughput.py")[-1], ["ratio_vs_naive", "max_rel_diff", "scaling_2_workers"]
    )
    assert values["ratio_vs_naive"] > 0 and values["scaling_2_workers"] > 0
    assert values["max_rel_diff"] < 1e-6  # our cropped, pooled extraction gives plain pyradiomics' values


@pytest.mark.slow
def test_densenet_throughput_smoke():
    lines = run_smoke("densenet_throughput.py")
    assert lines[0].startswith("device: CPU"), lines[0]
    values = result_values(lines[-1], ["ours_vs_bare", "ours_images_per_s", "bare_images_per_s"])
    assert all(v > 0 for v in values.values()), lines[-1]
    assert values["ours_vs_bare"] == pytest.approx(
        values["ours_images_per_s"] / values["bare_images_per_s"], rel=0.05, abs=2e-3
    )


@pytest.mark.slow
def test_sql_scale_smoke():
    lines = run_smoke("sql_scale.py")
    shape = re.search(r"lesion_features ([\d,]+) rows x (\d+) columns", "\n".join(lines))
    assert shape, lines
    assert int(shape[1].replace(",", "")) == 200 and int(shape[2]) > 3  # one row per lesion, feature columns
    values = result_values(lines[-1], ["seconds", "peak_gb", "time_ratio_to_target", "memory_ratio_to_target"])
    assert values["seconds"] > 0 and values["peak_gb"] > 0, lines[-1]
    assert values["time_ratio_to_target"] >= 0 and values["memory_ratio_to_target"] >= 0, lines[-1]


@pytest.mark.slow
def test_scoring_speed_smoke():
    lines = run_smoke("scoring_speed.py")
    values = result_values(
        lines[-1], ["scan_scoring_s", "model_load_s", "lesion_ms", "lesions_per_scan", "paper_lesion_cpu_s"]
    )
    assert values["lesions_per_scan"] == 4 and values["scan_scoring_s"] > 0 and values["paper_lesion_cpu_s"] > 0


@pytest.mark.slow
def test_scale_10k_smoke():
    """20 processed scans and 1 new one: every tick and the listing named exactly the new scan, and
    after another radiomics setting the listing named all 21 (the benchmark exits otherwise); the
    built feature store holds every processed scan's lesions."""
    lines = run_smoke("scale_10k.py")
    assert any(line.startswith("lake: 120 per-scan Parquet files for 20 processed scans") for line in lines), lines
    figures = [line for line in lines if "(target <" in line]
    assert len(figures) == 7, lines  # three ticks, the listing, the stale listing, the dbt build's time and memory
    values = result_values(lines[-1], ["ticks_s", "dbt_s", "dbt_gb", "stale_s"])
    assert all(v > 0 for v in values.values()), lines[-1]


@pytest.mark.slow
def test_imaging_overhead_smoke():
    """The platform and the plain loop of the same domain functions ran on one tiny cohort and left
    equal lake tables and artefacts (the benchmark exits otherwise)."""
    lines = run_smoke("imaging_overhead.py")
    assert any("the stores are equal" in line for line in lines), lines
    values = result_values(lines[-1], ["platform_vs_floor", "platform_s", "floor_s"])
    assert all(v > 0 for v in values.values()), lines[-1]
