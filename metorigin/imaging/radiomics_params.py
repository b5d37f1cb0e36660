"""A study's pyradiomics parameter file, checked by pyradiomics' own schema when the study is
loaded (`metorigin study`, `run`), not at the first scan: a file pyradiomics refuses used to pass
`metorigin study` and then fail every scan with a raw pykwalify error."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

MAX_BYTES = 1 << 20  # a parameter file is a few hundred bytes; anything near this is not one


def params_file_problem(path: Path) -> str | None:
    """Why pyradiomics would refuse the file (read as YAML by us, safely; then its schema and
    its schema's functions, as `RadiomicsFeatureExtractor` validates), or None."""
    import pykwalify.core
    import pykwalify.errors
    import radiomics

    try:
        if path.stat().st_size > MAX_BYTES:
            return f"it holds {path.stat().st_size:,} bytes, not a pyradiomics parameter file"
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return f"it cannot be read as YAML ({str(exc).splitlines()[0]})"
    if not isinstance(data, dict):
        return "it does not hold a mapping of pyradiomics settings (imageType, featureClass, setting)"
    schema, functions = radiomics.getParameterValidationFiles()
    logging.getLogger("pykwalify").setLevel(logging.CRITICAL)  # it logs every error before raising it
    try:
        pykwalify.core.Core(source_data=data, schema_files=[schema], extensions=[functions]).validate(
            raise_exception=True
        )
    except pykwalify.errors.PyKwalifyException as exc:
        return f"pyradiomics' schema refuses it: {' '.join(str(exc.msg).split())}"
    except (TypeError, ValueError) as exc:  # what the schema's own functions raise
        return f"pyradiomics' schema refuses it: {exc}"
    return None
