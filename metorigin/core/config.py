"""One typed run configuration: the cohort, the store, the study and the machine choices of a run.

The CLI (and a test, or a user of the Python API) resolves them once into a frozen `RunConfig` and
hands it to `metorigin.definitions.build_definitions(config)`, which builds the resources from it;
the study file is parsed and validated once per process (`RunConfig.study`).

A separate process gets the same configuration through one channel, the serialised `RunConfig`:
- processes metorigin starts itself (a pool worker of `metorigin run`, a Dask worker) receive it as
  an argument of the call that starts them (`to_json`, `from_json`);
- processes Dagster starts (the code location under `metorigin ui` and the runs its daemon
  launches) read it from the instance folder, `$DAGSTER_HOME/metorigin_config.json`, which
  `metorigin ui` writes (`write_for_instance`, `for_code_location`).
Nothing hands values on by writing `os.environ`. The variables a user may set are read here, and
only here: `DAGSTER_HOME` (Dagster's own; the store's instance folder otherwise),
`METORIGIN_SENSOR_INTERVAL_S` and `METORIGIN_SCANS_PER_RUN` (the daemon's pace).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from functools import lru_cache
from pathlib import Path

from .files import atomic_path
from .study import StudySettings, get_settings, with_run_choices
from .study_file import load_study

CONFIG_FILE = "metorigin_config.json"  # in the instance folder: what the code location builds its definitions from
DEFAULT_COHORT = "demo/cohort"
DEFAULT_STORE = "demo/store"
SENSOR_INTERVAL_S = int(os.environ.get("METORIGIN_SENSOR_INTERVAL_S", "60"))  # tests use a few seconds
# Scans per `process_scans` run that the sensor and the nightly schedule launch.
SCANS_PER_RUN = int(os.environ.get("METORIGIN_SCANS_PER_RUN", "25"))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What a run is about and where it runs. Paths are absolute (steps may change the working
    folder); empty strings and zeros mean "the study's own setting"."""

    cohort: str = DEFAULT_COHORT
    store: str = DEFAULT_STORE
    study_file: str = ""  # a study YAML; empty: the built-in study of the seed paper as `profile`
    profile: str = "quick"
    seed: int | None = None  # None: the study's seed
    nnunet_model: str = ""  # an nnU-Net v2 model folder: segment with it instead of the cohort's masks
    workers: int = 0  # processes for per-lesion work and model fitting; 0 = one per core
    densenet_epochs: int = 0
    split_repeats: int = 0
    executor: str = ""  # in_process | multiprocess | dask; empty: the study's cluster.executor
    dask_address: str = ""  # a running Dask scheduler; empty: the study's (or one started for the run)
    scans_at_once: int = 0
    run_log: str = ""  # the CLI's log file: worker processes write their Dagster log there too

    def __post_init__(self):
        for name in ("cohort", "store", "study_file", "nnunet_model", "run_log"):
            value = getattr(self, name)
            if value:
                object.__setattr__(self, name, str(Path(value).absolute()))

    @classmethod
    def of(cls, cohort, store, study_file=None, nnunet_model=None, **choices) -> RunConfig:
        """From the CLI's values (Paths or None); None and 0 choices keep the study's setting."""
        given = {k: v for k, v in choices.items() if v is not None}
        return cls(
            cohort=str(cohort),
            store=str(store),
            study_file=str(study_file or ""),
            nnunet_model=str(nnunet_model or ""),
            **given,
        )

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def study(self) -> StudySettings:
        """The study with this run's choices, parsed and validated once per process."""
        return _study(
            self.study_file,
            _mtime(self.study_file),
            self.profile,
            self.seed,
            self.nnunet_model,
            self.workers,
            self.densenet_epochs,
            self.split_repeats,
            self.executor,
            self.dask_address,
            self.scans_at_once,
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def write_for_instance(self, home: Path) -> Path:
        """The configuration the instance's code location (and so the daemon's runs) builds from."""
        path = Path(home) / CONFIG_FILE
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json() + "\n")
        return path


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns if path else 0
    except OSError:
        return 0  # load_study says what is wrong with it


@lru_cache(maxsize=16)
def _study(study_file, _modified, profile, seed, nnunet_model, workers, epochs, repeats, executor, address, at_once):
    settings = load_study(study_file, seed) if study_file else get_settings(profile, seed)
    return with_run_choices(settings, nnunet_model, workers, epochs, repeats, executor, address, at_once)


_active: list[RunConfig] = []  # the configuration this process last built definitions for


def activate(config: RunConfig) -> None:
    """This process's configuration: what a job reconstructed in this process (Dagster's
    `execute_job`, which loads `metorigin.definitions` again) builds from."""
    _active[:] = [config]


def for_code_location() -> RunConfig:
    """What `metorigin.definitions` loads with: this process's configuration when it built
    definitions already, else the instance's file (`metorigin ui` wrote it), else the demo's."""
    if _active:
        return _active[0]
    home = os.environ.get("DAGSTER_HOME")
    if home and (Path(home) / CONFIG_FILE).is_file():
        return RunConfig.from_json((Path(home) / CONFIG_FILE).read_text())
    return RunConfig()


def worker_config(text: str) -> RunConfig:
    """The configuration a Dask worker received, with its job's cores as its worker count where the
    run gave none (a Slurm worker job exports METORIGIN_WORKERS: the CPUs it booked)."""
    config = RunConfig.from_json(text)
    cores = os.environ.get("METORIGIN_WORKERS", "")
    return config.replace(workers=int(cores)) if not config.workers and cores.isdigit() else config


def dagster_home_override() -> str | None:
    """$DAGSTER_HOME, when the user set one (else each store uses its own instance folder)."""
    return os.environ.get("DAGSTER_HOME") or None


def child_environment(**values: str) -> dict[str, str]:
    """The environment for a process started here (dbt, `dagster dev`): this one's, with `values`."""
    return {**os.environ, **values}


@contextlib.contextmanager
def scoped_environment(**values: str):
    """`values` in this process's environment for the duration, then restored. Only for libraries
    that read it themselves and take no `env=`: dagster-dbt's DbtCliResource starts dbt with a copy
    of the process environment, and its in-process adapter (the column metadata) reads it too, so
    the dbt project's profiles.yml takes the store's paths from there; nnU-Net reads its folders
    when its modules are imported."""
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def quiet_libraries() -> None:
    """Great Expectations reads its analytics switch from the environment when it is imported."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
