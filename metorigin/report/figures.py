"""The study report's figures, drawn with matplotlib on `Figure` objects (no pyplot: no global
state, no display). Each takes the data the report writes as CSV beside it, so a figure and its
table cannot disagree. Artists that a test or a reader looks for carry an id (`set_gid`), which the
SVG keeps: `roc-lesion-<model>` for each model's ROC curve, `fig4-cells` for the per-lesion grid."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from metorigin.core.study import UNLABELLED
from metorigin.study.tables import readable_feature

# Applied around the report's drawing (study_report.py), never globally: the QC pictures drawn in
# the same process keep matplotlib's defaults. A fixed hash salt: the same store, the same SVG ids.
STYLE = {"svg.hashsalt": "metorigin", "font.size": 8, "axes.titlesize": 8, "figure.dpi": 100}

CLASS_COLOURS = ("#1f77b4", "#d62728")  # the study's first and second class, in every figure
UNLABELLED_COLOUR = "#7f7f7f"  # the patients whose label cell is empty (Table 1's `unlabelled`)
LEVEL_COLOURS = {"lesion": "#1f77b4", "patient": "#ff7f0e", "cv": "#555555"}


def model_label(row: pd.Series) -> str:
    resampler = row.get("resampler")
    return row["model"] + (f" ({resampler})" if isinstance(resampler, str) and resampler else "")


def _panels(n: int, columns: int = 5, size: float = 2.4) -> tuple[Figure, list]:
    rows = max(1, -(-n // columns))
    columns = min(columns, max(n, 1))
    fig = Figure(figsize=(columns * size, rows * size + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def cohort_flow(steps: list[str], exclusions: dict[int, str], sets: list[str], unlabelled: str | None = None) -> Figure:
    """A CONSORT-style flow: `steps` down the middle, `exclusions[i]` to the right of the arrow
    leaving step i, the split's `sets` side by side at the bottom, and, when given, the
    `unlabelled` patients in a grey, dashed box of their own beside the last step (analysed, but in
    no set: never trained on)."""
    height = 1.3 * len(steps) + 1.8
    fig = Figure(figsize=(9, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, height)
    ax.axis("off")
    box = {"boxstyle": "round,pad=0.4", "facecolor": "white", "edgecolor": "black"}
    ys = [height - 0.7 - 1.3 * i for i in range(len(steps))]
    for i, (text, y) in enumerate(zip(steps, ys)):
        step = ax.text(3.5, y, text, ha="center", va="center", bbox=box, wrap=True)
        if i + 1 < len(steps):
            ax.annotate("", (3.5, ys[i + 1] + 0.35), (3.5, y - 0.35), arrowprops={"arrowstyle": "->"})
        if i in exclusions:
            ax.annotate("", (6.2, y - 0.65), (3.5, y - 0.65), arrowprops={"arrowstyle": "->"})
            ax.text(6.3, y - 0.65, exclusions[i], ha="left", va="center", bbox={**box, "facecolor": "#f3f3f3"})
    bottom = ys[-1] - 1.5
    for j, text in enumerate(sets):
        x = (j + 0.5) * 10 / len(sets)
        ax.annotate("", (x, bottom + 0.45), (3.5, ys[-1] - 0.35), arrowprops={"arrowstyle": "->"})
        ax.text(x, bottom, text, ha="center", va="center", bbox=box)
    if unlabelled:
        ax.annotate(
            unlabelled,
            (1, 0.5),
            (6.3, ys[-1]),
            xycoords=step,  # from the last step's right side
            textcoords="data",
            ha="left",
            va="center",
            bbox={**box, "facecolor": "#f3f3f3", "edgecolor": UNLABELLED_COLOUR, "linestyle": "--"},
            arrowprops={"arrowstyle": "<-", "linestyle": "--", "color": UNLABELLED_COLOUR, "shrinkB": 8},
        )
    return fig


def example_lesions(examples: dict[str, list[tuple[str, np.ndarray]]]) -> Figure:
    """Masked, windowed slices (the DenseNet's input before resizing and augmentation), a row per class."""
    columns = max((len(v) for v in examples.values()), default=1)
    fig = Figure(figsize=(2.2 * columns, 2.4 * len(examples)), layout="constrained")
    axes = fig.subplots(len(examples), columns, squeeze=False)
    for row, (label, images) in zip(axes, examples.items()):
        for ax in row:
            ax.axis("off")
        for ax, (title, image) in zip(row, images):
            ax.imshow(image, cmap="gray", vmin=0, vmax=255 if image.dtype == np.uint8 else 1)
            ax.set_title(f"{label}\n{title}")
    return fig


def lesion_grid(cells: pd.DataFrame, models: list[str], names: list[str], classes: tuple[str, ...]) -> Figure:
    """The paper's Fig. 4: test lesions as rows (grouped by class and patient), models as columns;
    green where the model is right, red where it is wrong, the shade its probability for the
    lesion's true class. The margins count the lesions per class and each model's correct ones."""
    wide = cells.pivot_table(index="lesion_id", columns="model_id", values="p_true", sort=False)[models]
    order = cells.drop_duplicates("lesion_id").set_index("lesion_id")
    n = len(wide)
    fig = Figure(figsize=(2.5 + 0.42 * len(models), 2.6 + min(0.03 * n, 14)), layout="constrained")
    ax = fig.add_subplot()
    colours = ListedColormap(mpl.colormaps["RdYlGn"](np.linspace(0, 1, 256)))
    mesh = ax.pcolormesh(wide.to_numpy(), cmap=colours, vmin=0, vmax=1)
    mesh.set_gid("fig4-cells")
    ax.invert_yaxis()
    ax.set_xticks(np.arange(len(models)) + 0.5, names, rotation=90)
    labels = order.loc[wide.index, "label"].to_numpy()
    patients = order.loc[wide.index, "patient_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, patients[1:] != patients[:-1]])
    ax.hlines(starts[1:], 0, len(models), colors="white", linewidth=0.4)
    ticks = []
    for label in classes:
        rows = np.flatnonzero(labels == label)
        if len(rows):
            ax.hlines(rows[-1] + 1, 0, len(models), colors="black", linewidth=1.2)
            correct = cells[cells["label"] == label].groupby("model_id")["correct"].sum()
            ticks.append((rows.mean(), f"{label}\n{len(rows)} lesions\n{len(set(patients[rows]))} patients"))
            counts = ", ".join(str(int(correct.get(m, 0))) for m in models)
            ax.text(len(models) + 0.3, rows[-1] + 0.5, f"correct: {counts}", fontsize=5, va="bottom")
    ax.set_yticks([t for t, _ in ticks], [text for _, text in ticks])
    ax.set_title("Test lesions (rows, grouped by patient) x models: probability of the true class")
    fig.colorbar(mesh, ax=ax, label="probability of the true class (< 0.5: wrong)", shrink=0.5)
    return fig


def roc_panels(points: pd.DataFrame, cv: pd.DataFrame, models: list[str], names: list[str], aucs: dict) -> Figure:
    """One panel per model: the test ROC at lesion and patient level, each with its 95%
    patient-bootstrap band, and the nested CV's mean ROC over the outer folds (dashed)."""
    fig, axes = _panels(len(models))
    for ax, model_id, name in zip(axes, models, names):
        ax.plot([0, 1], [0, 1], color="#bbbbbb", linewidth=0.6)
        ours = points[points["model_id"] == model_id]
        for level in ("lesion", "patient"):
            band = ours[(ours["level"] == level) & (ours["kind"] == "band")]
            curve = ours[(ours["level"] == level) & (ours["kind"] == "curve")]
            if curve.empty:
                continue
            ax.fill_between(band["fpr"], band["tpr"], band["tpr_high"], color=LEVEL_COLOURS[level], alpha=0.15)
            (line,) = ax.plot(
                curve["fpr"],
                curve["tpr"],
                color=LEVEL_COLOURS[level],
                drawstyle="default",
                label=f"{level} {aucs.get((model_id, level), float('nan')):.2f}",
            )
            line.set_gid(f"roc-{level}-{model_id}")
        folds = cv[cv["model_id"] == model_id]
        if not folds.empty:
            ax.plot(
                folds["fpr"],
                folds["tpr"],
                "--",
                color=LEVEL_COLOURS["cv"],
                linewidth=0.9,
                label=f"CV mean ({int(folds['folds'].iloc[0])} folds)",
            )
        if ours.empty:
            ax.text(0.5, 0.5, "one class only:\nno ROC", ha="center", va="center")
        ax.set_title(name)
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=6, title="AUC", title_fontsize=6)
    fig.supxlabel("1 - specificity")
    fig.supylabel("sensitivity")
    return fig


def calibration_panels(bins: pd.DataFrame, models: list[str], names: list[str]) -> Figure:
    """Reliability curves on the test lesions, one panel per model, with the Brier score."""
    fig, axes = _panels(len(models))
    for ax, model_id, name in zip(axes, models, names):
        ours = bins[bins["model_id"] == model_id]
        ax.plot([0, 1], [0, 1], color="#bbbbbb", linewidth=0.6)
        if ours.empty:
            ax.text(0.5, 0.5, "no test lesions", ha="center", va="center")
        else:
            (line,) = ax.plot(ours["predicted"], ours["observed"], "o-", markersize=3)
            line.set_gid(f"calibration-{model_id}")
            name = f"{name}\nBrier {ours['brier'].iloc[0]:.3f}"
        ax.set(xlim=(0, 1), ylim=(0, 1), title=name)
        ax.set_aspect("equal")
    fig.supxlabel("mean predicted probability (quantile bins)")
    fig.supylabel("observed share of the positive class")
    return fig


def importance_bars(kept: pd.DataFrame) -> Figure:
    """Table 2: permutation importance of the kept features, with its SD over the repeats."""
    kept = kept.sort_values("rank", ascending=False)
    fig = Figure(figsize=(7, 1 + 0.22 * len(kept)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(
        [readable_feature(f) for f in kept["feature_name"]],
        kept["importance"],
        xerr=kept["importance_sd"],
        color="#4c72b0",
        error_kw={"elinewidth": 0.8},
    )
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("permutation importance (drop in training-CV AUC), mean ± SD")
    return fig


def correlation_heatmap(values: pd.DataFrame) -> Figure:
    """Pearson correlation of the kept features on the training lesions: what selection left."""
    r = values.corr()
    names = [readable_feature(c) for c in r.columns]
    fig = Figure(figsize=(2 + 0.3 * len(names), 1.5 + 0.3 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(r.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(image, ax=ax, label="Pearson r", shrink=0.6)
    return fig


def burden_by_class(burden: pd.DataFrame, classes: tuple[str, ...]) -> Figure:
    """Table 1's lesion quantities as distributions: tumour burden and lesions per patient, per
    class and, as in Table 1, for the unlabelled patients (NULL label) apart when there are any."""
    unlabelled = burden["label"].isna()
    cohorts = [*classes, UNLABELLED] if unlabelled.any() else list(classes)
    colours = [*CLASS_COLOURS[: len(classes)], UNLABELLED_COLOUR]
    cohort = burden["label"].where(~unlabelled, UNLABELLED)
    fig = Figure(figsize=(7, 2.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, column, title in zip(axes, ("tumor_burden", "n_lesions"), ("liver tumour burden", "lesions per patient")):
        groups = [burden.loc[cohort == c, column].dropna().to_numpy() for c in cohorts]
        ax.boxplot(groups, showfliers=False)
        ax.set_xticks(range(1, len(cohorts) + 1), cohorts)
        rng = np.random.default_rng(0)  # fixed jitter: the same store draws the same figure
        for i, (values, colour) in enumerate(zip(groups, colours), 1):
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=8, color=colour, alpha=0.7)
        ax.set_title(f"{title} (one dot a patient)")
    axes[0].yaxis.set_major_formatter(mpl.ticker.PercentFormatter(1.0))
    return fig
