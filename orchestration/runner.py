"""Materialise an asset selection through the same Definitions the UI loads, and summarise it."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg


@dataclass
class RunReport:
    """What a user needs to know after a run: did it work, and if not, what exactly to fix."""

    run_id: str
    success: bool
    materialized: list[str] = field(default_factory=list)
    step_failures: list[str] = field(default_factory=list)
    failed_checks: list[tuple[str, str]] = field(default_factory=list)  # (check, problems)

    @property
    def ok(self) -> bool:
        return self.success and not self.failed_checks


def run_selection(defs: dg.Definitions, instance: dg.DagsterInstance, selection: str | None = None,
                  log_level: str = "INFO") -> RunReport:
    chosen = dg.AssetSelection.from_string(selection) if selection else dg.AssetSelection.all()
    if not chosen.resolve(defs.resolve_asset_graph()):
        raise ValueError(f"the selection {selection!r} matches no asset")
    result = dg.materialize(
        defs.assets, resources=defs.resources, instance=instance, selection=chosen, raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}})
    report = RunReport(run_id=result.run_id, success=result.success)
    report.materialized = sorted({e.asset_key.to_user_string() for e in result.get_asset_materialization_events()})
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        report.step_failures.append(f"{event.step_key}: {error.message.strip() if error else 'failed'}")
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            messages = evaluation.metadata.get("messages")
            report.failed_checks.append((f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}",
                                         messages.value if messages else evaluation.description or ""))
    return report
