"""The study report: the paper's figures and tables from the store, as one HTML page and, for a
manuscript, every figure as SVG and 300-dpi PNG and every table (and every figure's data) as CSV.

Sections whose tables the store does not hold yet say which command fills them; the rest still
render, so a store with only the feature store gets its cohort flow and Table 1.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from markupsafe import Markup
from matplotlib.figure import Figure

from metorigin.arms import ARMS
from metorigin.core.files import atomic_folder
from metorigin.report import figures
from metorigin.report.curves import cv_roc, lesion_grid, reliability, roc_points, with_truth
from metorigin.report.page import render
from metorigin.report.paper_tables import PaperTable, external_table3, paper_tables
from metorigin.report.report_data import ReportTables
from metorigin.study.arm import Arm, ReportSection

EXAMPLES_PER_CLASS = 3
SETS = ("train", "validation", "test")
THUMBNAILS = ("cohort_flow", "fig4_lesions", "roc")  # shown on the asset's page in the UI, small
UNLABELLED_FLOW = "; the unlabelled patients (empty label cell) apart, in grey: scored, never trained on."


@dataclass
class Section:
    key: str
    title: str
    items: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@dataclass
class Images:
    """What the report shows of the patients' images (None for the shareable version): example
    lesion slices per class, and each test scan's QC picture (None where it has none yet)."""

    examples: dict[str, list[tuple[str, np.ndarray]]]
    qc: list[tuple[str, bytes | None]]


@dataclass
class StudyReport:
    html: Path
    folder: Path
    figures: list[str]
    tables: list[str]
    missing: list[str]  # titles of the sections with something missing (each says what, and the fix)
    thumbnails: dict[str, tuple[str, bytes]]  # figure -> (title, small PNG), for the Dagster asset page
    paper: dict[str, PaperTable]  # Tables 1-3 and what stands beside them


class _Writer:
    """Writes each figure (SVG, PNG) and table (CSV) into the report folder as the page is built."""

    def __init__(self, folder: Path):
        self.folder, self.figures, self.tables, self.thumbnails = folder, [], [], {}
        folder.mkdir(parents=True, exist_ok=True)

    def figure(self, name: str, title: str, caption: str, fig: Figure, data: pd.DataFrame | None) -> dict:
        # A figure without a layout engine (the flow) is cropped to what it draws; the others lay
        # themselves out (constrained layout), and "tight" would measure every text again.
        crop = "tight" if fig.get_layout_engine() is None else None
        if crop is None:  # laid out once, then frozen: each of the 2-3 files below would lay it out again
            fig.draw_without_rendering()
            fig.set_layout_engine("none")
        fig.savefig(self.folder / f"{name}.png", dpi=300, bbox_inches=crop, metadata={"Software": None})
        if name in THUMBNAILS:
            small = io.BytesIO()
            fig.savefig(small, format="png", dpi=45, bbox_inches=crop)
            self.thumbnails[name] = (title, small.getvalue())
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", bbox_inches=crop, metadata={"Date": None})
        svg = buffer.getvalue()
        (self.folder / f"{name}.svg").write_text(svg, encoding="utf-8")
        if data is not None:
            data.to_csv(self.folder / f"{name}.csv", index=False)
        self.figures.append(name)
        inline = svg[svg.index("<svg") :]  # the XML prologue and doctype belong to a file, not a page
        return {"kind": "figure", "name": name, "title": title, "caption": caption, "svg": Markup(inline)}

    def table(self, table: PaperTable) -> dict:
        table.frame.to_csv(self.folder / f"{table.name}.csv", index=False)
        self.tables.append(table.name)
        html = Markup(table.frame.to_html(index=False, border=0, na_rep="", escape=True))
        return {"kind": "table", "html": html, **{k: getattr(table, k) for k in ("name", "title", "sql", "notes")}}


def _needs(section: Section, tables: ReportTables, *names: str) -> bool:
    """True when every table is there; otherwise the section says what is missing and how to fill it."""
    gaps = [f"{name}: {tables.missing[name]}" for name in names if name in tables.missing]
    section.missing += [g for g in gaps if g not in section.missing]
    return not gaps


def exclusion_category(reason: str) -> str:
    """A scan's exclusion reason as the flow counts it, by its first reason (a scan is counted
    once): an inclusion criterion in its own words (they hold no id), one line for invalid rows
    and one for QC verdicts, whose reasons name files, patients, reviewers and dates."""
    first = reason.split("; ")[0]
    if first.startswith("invalid row"):
        return "invalid row in scans.csv or patients.csv"
    if first.startswith(("failed image QC", "qc.csv line")):
        return "failed image QC (qc.csv)"
    return first


def _flow(tables: ReportTables) -> tuple[list[str], dict[int, str], list[str], str | None, pd.DataFrame]:
    patients, scans, lesions = tables.get("patients"), tables.get("scans"), tables.get("lesions")
    included = scans[scans["included"]]
    excluded = scans[~scans["included"]].fillna({"exclusion_reason": "not included"})
    minimum = tables.setting("lesions.min_diameter_mm")
    kept = lesions[lesions["included"]]
    dropped = lesions[~lesions["included"]]
    small = dropped["max_diameter_mm"] < minimum if minimum is not None else pd.Series(False, index=dropped.index)
    reasons = excluded["exclusion_reason"].map(exclusion_category).value_counts()
    other = dropped.loc[~small, "exclusion_reason"].fillna("not included").value_counts()
    steps = [
        f"cohort: {len(patients)} patients, {len(scans)} scans",
        f"{len(included)} scans included ({included['patient_id'].nunique()} patients)",
        f"{len(lesions)} lesions found",
        f"{len(kept)} lesions analysed ({kept['patient_id'].nunique()} patients)",
    ]
    exclusions = {}
    if len(excluded):
        exclusions[0] = f"{len(excluded)} scans excluded\n" + "\n".join(f"{r}: {n}" for r, n in reasons.items())
    if len(dropped):
        lines = ([f"under the minimum diameter ({minimum:g} mm): {int(small.sum())}"] if small.any() else []) + [
            f"{r}: {n}" for r, n in other.items()
        ]
        exclusions[2] = f"{len(dropped)} lesions excluded\n" + "\n".join(lines)
    counts = [("cohort", "patients", len(patients)), ("cohort", "scans", len(scans))]
    counts += [("excluded scans", r, n) for r, n in reasons.items()]
    counts += [("included", "scans", len(included)), ("lesions", "found", len(lesions))]
    counts += [("lesions", "under the minimum diameter", int(small.sum())), ("lesions", "analysed", len(kept))]
    sets, set_counts = _split_boxes(tables.get("split"))
    unlabelled, unlabelled_counts = _unlabelled_box(patients, kept)
    counts += set_counts + unlabelled_counts
    return steps, exclusions, sets, unlabelled, pd.DataFrame(counts, columns=["stage", "what", "count"])


def _split_boxes(split: pd.DataFrame | None) -> tuple[list[str], list[tuple[str, str, int]]]:
    """One box per set of the split, its patients and lesions by class, and the same as counts."""
    if split is None:
        return ["split: not computed yet"], []
    sets, counts = [], []
    for name in SETS:
        ours = split[split["set"] == name]
        lines = [f"{name}: {len(ours)} patients, {int(ours['n_lesions'].sum())} lesions"]
        for label, group in ours.groupby("label", sort=True):
            lines.append(f"{label}: {len(group)} patients, {int(group['n_lesions'].sum())} lesions")
            counts += [
                (name, f"{label} patients", len(group)),
                (name, f"{label} lesions", int(group["n_lesions"].sum())),
            ]
        sets.append("\n".join(lines))
    return sets, counts


def _unlabelled_box(patients: pd.DataFrame, kept: pd.DataFrame) -> tuple[str | None, list[tuple[str, str, int]]]:
    """The analysed patients whose label cell is empty: outside the split (training_matrix leaves
    them out), so Fig. 1 shows them in a box of their own. None when the cohort has none, so that
    such a cohort's figure is unchanged."""
    ours = kept[kept["patient_id"].isin(patients.loc[patients["label"].isna(), "patient_id"])]
    if ours.empty:
        return None, []
    n = ours["patient_id"].nunique()
    text = f"{n} unlabelled patient{'s' if n != 1 else ''}: scored,\nnever trained on ({len(ours)} lesions)"
    return text, [("unlabelled", "patients", n), ("unlabelled", "lesions", len(ours))]


def _cohort(tables: ReportTables, paper: dict[str, PaperTable], out: _Writer) -> Section:
    section = Section("cohort", "Cohort")
    if _needs(section, tables, "patients", "scans", "lesions"):
        steps, exclusions, sets, unlabelled, counts = _flow(tables)
        section.items.append(
            out.figure(
                "cohort_flow",
                "Fig. 1: cohort flow",
                "Patients and scans in the cohort, those excluded with each reason, the lesions found and those under "
                "the minimum diameter, and the split of the analysed patients by class (train / validation / test)"
                + (UNLABELLED_FLOW if unlabelled else "."),
                figures.cohort_flow(steps, exclusions, sets, unlabelled),
                counts,
            )
        )
    _needs(section, tables, "split")
    if _needs(section, tables, "table1"):
        section.items.append(out.table(paper["table1"]))
    if _needs(section, tables, "burden"):
        burden = tables.get("burden")
        section.items.append(
            out.figure(
                "tumour_burden",
                "Tumour burden and lesions per patient by class",
                "Table 1's lesion quantities as distributions, one dot per patient (boxes: median and quartiles).",
                figures.burden_by_class(burden, tables.classes),
                burden,
            )
        )
    return section


def _examples(tables: ReportTables, out: _Writer, images: Images | None) -> Section:
    section = Section("examples", "Example lesions")
    if images is None:
        section.items.append({"kind": "text", "text": "Left out of this shareable version: it shows no image."})
    elif _needs(section, tables, "example_slices") and images.examples:
        section.items.append(
            out.figure(
                "example_lesions",
                "Fig. 3: example lesions",
                f"The largest slice of the {EXAMPLES_PER_CLASS} largest lesions per class, one per patient, masked and "
                "windowed as the DenseNet's input is cut (before its resizing and augmentation); "
                "training patients only, never a test patient.",
                figures.example_lesions(images.examples),
                None,
            )
        )
    return section


def _qc_gallery(tables: ReportTables, images: Images | None) -> Section:
    """Every test scan's QC picture: the masks on the CT, what a radiologist checks first."""
    section = Section("qc", "Image QC: the test patients' scans")
    if images is None:
        section.items.append({"kind": "text", "text": "Left out of this shareable version: it shows no image."})
        return section
    if not _needs(section, tables, "test_scans"):
        return section
    shown = [(caption, png) for caption, png in images.qc if png is not None]
    absent = len(images.qc) - len(shown)
    if absent:
        section.missing.append(
            f"{absent} test scan(s) have no QC picture yet (stores written before the pictures existed): "
            "`metorigin run --store STORE --select key:lesions --force` draws them"
        )
    pictures = [{"caption": c, "src": "data:image/png;base64," + base64.b64encode(png).decode()} for c, png in shown]
    section.items.append(
        {
            "kind": "gallery",
            "name": "qc",
            "pictures": pictures,
            "text": "The axial slice through each scan's largest lesion: liver contour green, lesions red, over the "
            "CT in the study's window (artifacts/qc/<scan>.png). A scan whose masks miss the liver or its lesions "
            "is excluded by a verdict in the cohort's qc.csv.",
        }
    )
    return section


def _features(tables: ReportTables, paper: dict[str, PaperTable], out: _Writer) -> Section:
    section = Section("features", "Feature selection")
    if not _needs(section, tables, "table2"):
        return section
    importance = tables.get("table2")
    kept = importance[importance["kept"]]
    section.items.append(out.table(paper["table2"]))
    section.items.append(
        out.figure(
            "importance",
            "Table 2 as a chart",
            "Permutation importance of each kept feature on the training patients (mean and SD over the repeats).",
            figures.importance_bars(kept),
            kept,
        )
    )
    if _needs(section, tables, "training_lesions") and len(kept) > 1:
        values = tables.get("training_lesions")[kept.sort_values("rank")["feature_name"]]
        section.items.append(
            out.figure(
                "feature_correlation",
                "Correlation of the kept features",
                "Pearson r on the training lesions; selection kept no pair above the study's threshold.",
                figures.correlation_heatmap(values),
                values.corr().reset_index(names="feature"),
            )
        )
    return section


def _models(tables: ReportTables) -> pd.DataFrame:
    metrics = tables.get("table3")
    return metrics.assign(name=[figures.model_label(r) for _, r in metrics.iterrows()])


def _table3(tables: ReportTables, paper: dict[str, PaperTable], out: _Writer) -> Section:
    section = Section("table3", "Model performance")
    if _needs(section, tables, "table3", "metric_intervals"):
        section.items += [
            out.table(paper[name]) for name in ("table3", "comparisons", "split_repeats") if name in paper
        ]
        section.items += _deleted_models(tables)
    return section


def _deleted_models(tables: ReportTables) -> list[dict]:
    """What the registry says of models `metorigin forget` deleted: those still in Table 3 (the study
    was not retrained since) and how many earlier ones went."""
    deleted = tables.get("deleted_models")
    if deleted is None or deleted.empty:
        return []
    shown = deleted[deleted["model_id"].isin(set(tables.get("table3")["model_id"]))]
    items = []
    if len(shown):
        items.append(
            {
                "kind": "text",
                "text": f"{len(shown)} of the models above were deleted since they were measured ("
                f"{shown['removed'].iloc[0]}): their numbers were measured with that patient's data, and "
                "the models are gone and score no one. Retrain the study (metorigin run --select 'group:study' "
                "--force) for models trained without the patient.",
            }
        )
    if len(deleted) > len(shown):
        items.append(
            {
                "kind": "text",
                "text": f"{len(deleted) - len(shown)} model(s) of an earlier training were deleted (a patient they "
                "learnt from was erased); the models above were trained without that patient. The registry "
                "(models, its removed column) lists them.",
            }
        )
    return items


def _test_curves(tables: ReportTables, out: _Writer, seed: int) -> list[Section]:
    grid, roc, calibration = (
        Section("fig4", "Per-lesion comparison"),
        Section("roc", "ROC curves"),
        Section("calibration", "Calibration"),
    )
    if not all([_needs(s, tables, "table3", "test_predictions") for s in (grid, roc, calibration)]):
        return [grid, roc, calibration]
    models = _models(tables)
    ids, names = models["model_id"].tolist(), models["name"].tolist()
    predictions = with_truth(tables.get("test_predictions"), tables.label)
    if predictions.empty:
        for section in (grid, roc, calibration):
            section.missing.append("lesion_predictions holds no test lesion: the study's models have not scored any")
        return [grid, roc, calibration]
    cells = lesion_grid(predictions, ids, tables.classes)
    grid.items.append(
        out.figure(
            "fig4_lesions",
            "Fig. 4: every test lesion by every model",
            f"{cells['lesion_id'].nunique()} test lesions of {cells['patient_id'].nunique()} patients (rows, grouped "
            f"by class and patient) x {len(ids)} models (columns). Green: right at the 0.5 threshold, red: wrong; the "
            "shade is the probability the model gave the true class. The margin counts each model's correct lesions "
            "per class, in column order.",
            figures.lesion_grid(cells, ids, names, tables.classes),
            cells,
        )
    )
    if predictions["y_true"].nunique() < 2:
        why = (
            f"The test patients hold one class only ({predictions['label'].iloc[0]}): no ROC curve or "
            "reliability curve can be drawn; a split with both classes in the test set fills these sections."
        )
        roc.missing.append(why)
        calibration.missing.append(why)
        return [grid, roc, calibration]
    points = roc_points(predictions, seed)
    cv = cv_roc(with_truth(tables.get("cv_predictions"), tables.label)) if tables.has("cv_predictions") else None
    metrics = tables.get("table3")
    aucs = {
        (r["model_id"], level): r[column]
        for _, r in metrics.iterrows()
        for level, column in (("lesion", "auc"), ("patient", "patient_auc"))
    }
    roc.items.append(
        out.figure(
            "roc",
            "ROC curves on the test patients",
            "One panel per model of Table 3: lesion level (blue) and patient level (orange, the mean of a patient's "
            "lesion probabilities), each with its pointwise 95% patient-bootstrap band (of the sensitivity at each "
            "1 - specificity); dashed, the nested CV's lesion-level ROC averaged over the outer folds on the "
            "training patients (radiomics models). The legend gives each AUC.",
            figures.roc_panels(points, cv if cv is not None else pd.DataFrame(columns=["model_id"]), ids, names, aucs),
            points,
        )
    )
    if cv is not None:
        cv.to_csv(out.folder / "roc_cv.csv", index=False)
    bins = reliability(predictions)
    calibration.items.append(
        out.figure(
            "calibration",
            "Calibration on the test lesions",
            "Observed share of the positive class against the mean predicted probability in deciles of each model's "
            "test probabilities, with the Brier score (lower is better).",
            figures.calibration_panels(bins, ids, names),
            bins,
        )
    )
    return [grid, roc, calibration]


def _arm_section(tables: ReportTables, out: _Writer, store_root: Path, arm: Arm, declared: ReportSection) -> Section:
    """A section an arm declares (metorigin/arms/): its figures, drawn from its Table 3 rows and
    their model cards."""
    section = Section(declared.key, declared.title)
    if not _needs(section, tables, "table3"):
        return section
    rows = tables.get("table3")
    rows = rows[rows["arm"] == arm.name]
    if rows.empty:
        section.missing.append(f"no {arm.title} in model_metrics: the study's {arm.asset} step has not run")
        return section
    card_files = [(store_root / file).with_suffix(".json") for file in rows["model_file"]]
    absent = [file for file, card in zip(rows["model_file"], card_files) if not card.is_file()]
    if absent:
        section.missing.append(
            f"the {arm.title}'s model card ({absent[0]}, .json) is not in the store: its training is unknown"
        )
        return section
    cards = [json.loads(file.read_text()) for file in card_files]
    for figure in declared.draw(rows, cards):
        section.items.append(out.figure(figure.name, figure.title, figure.caption, figure.figure, figure.data))
    return section


def write_report(
    tables: ReportTables,
    folder: Path,
    provenance: list[tuple[str, str]],
    store_root: Path,
    images: Images | None,
    seed: int,
    robustness_hash: str | None = None,
    title: str = "Study report",
) -> StudyReport:
    """Build every section (`images` None: the shareable version without images) and write the
    page, figures and tables into `folder`; `robustness_hash` (the study's) marks stale robustness rows."""
    paper = paper_tables(tables, robustness_hash)
    with atomic_folder(folder) as work, mpl.rc_context(figures.STYLE):
        out = _Writer(work)
        sections = [
            _cohort(tables, paper, out),
            _examples(tables, out, images),
            _qc_gallery(tables, images),
            _features(tables, paper, out),
            _table3(tables, paper, out),
            *_test_curves(tables, out, seed),
            *(_arm_section(tables, out, store_root, arm, section) for arm in ARMS for section in arm.report_sections),
        ]
        report = _page(out, tables, sections, provenance, title, images is None, paper)
    return _moved(report, folder)


def _moved(report: StudyReport, folder: Path) -> StudyReport:
    """The report as it lies once its unfinished folder became `folder` (core/files.py atomic_folder)."""
    return replace(report, html=folder / report.html.name, folder=folder)


def _page(
    out: _Writer,
    tables: ReportTables,
    sections: list[Section],
    provenance: list[tuple[str, str]],
    title: str,
    anonymous: bool,
    paper: dict[str, PaperTable],
) -> StudyReport:
    """The HTML page of the sections (the study's settings at the end), written beside their files."""
    settings = tables.get("settings")
    pairs = [] if settings is None else list(zip(settings["key"], settings["value"]))
    page = render(title=title, provenance=provenance, sections=sections, settings=pairs, anonymous=anonymous)
    html = out.folder / "report.html"
    html.write_text(page, encoding="utf-8")
    missing = [s.title for s in sections if s.missing]
    return StudyReport(html, out.folder, out.figures, out.tables, missing, out.thumbnails, paper)


def write_external_report(
    tables: ReportTables, folder: Path, provenance: list[tuple[str, str]], seed: int, title: str
) -> StudyReport:
    """The external validation's page: its Table 3, then Fig. 4, the ROC and the calibration curves
    of the frozen models on this cohort, drawn exactly as the study report draws them."""
    metrics = tables.get("external_metrics")
    curves = ReportTables(
        {**tables.frames, "table3": metrics, "test_predictions": tables.get("external_predictions")},
        tables.missing,
    )
    table = external_table3(metrics)
    with atomic_folder(folder) as work, mpl.rc_context(figures.STYLE):
        out = _Writer(work)
        sections = [Section("table3", "External validation", [out.table(table)]), *_test_curves(curves, out, seed)]
        report = _page(out, tables, sections, provenance, title, False, {"table3": table})
    return _moved(report, folder)
