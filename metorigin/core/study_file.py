"""Reading a study file: YAML on top of a built-in profile, validated, with errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from metorigin.core.errors import StudyFileError
from metorigin.core.study import (
    DEFAULT_RADIOMICS_PARAMS,
    PACKAGED_PARAMS,
    PROFILE_OVERRIDES,
    PROFILES,
    SETTINGS_ADAPTER,
    StudySettings,
    get_settings,
    plain_settings,
)


def _merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        value = {} if value is None and isinstance(base.get(key), dict) else value  # `densenet:` with nothing under it
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def load_study(path: str | Path, seed: int | None = None) -> StudySettings:
    """Read and validate a study file; every refusal names the file, the key path and the fix."""
    path = Path(path)
    if not path.is_file():
        raise StudyFileError(
            str(path), "", "the study file does not exist", "give the path of a study YAML file (see examples/)"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise StudyFileError(
            str(path),
            "",
            f"it is not valid YAML ({str(exc).splitlines()[0]})",
            "fix the YAML syntax (indentation, colons, quotes)",
        ) from None
    if not isinstance(data, dict):
        raise StudyFileError(
            str(path),
            "",
            "the file does not hold a mapping of settings",
            "write one `key: value` per line at the top level (see examples/)",
        )
    profile = data.pop("base", "quick")
    if not isinstance(profile, str) or profile not in PROFILE_OVERRIDES:
        raise StudyFileError(
            str(path), "base", f"unknown base profile {profile!r}", f"use one of {', '.join(PROFILES)}"
        )
    if "profile" in data:
        raise StudyFileError(
            str(path),
            "profile",
            "the profile is set by `base`",
            "write `base: paper` or `base: quick` instead of `profile`",
        )
    params = (data.get("radiomics") or {}).get("params_file") if isinstance(data.get("radiomics"), dict) else None
    if params == PACKAGED_PARAMS:
        data["radiomics"]["params_file"] = str(DEFAULT_RADIOMICS_PARAMS)
    elif params is not None:
        resolved = (path.parent / str(params)).resolve()
        folder = path.parent.resolve()
        if not resolved.is_relative_to(folder) and resolved != DEFAULT_RADIOMICS_PARAMS.resolve():
            raise StudyFileError(
                str(path),
                "radiomics.params_file",
                f"{params!r} lies outside the study file's folder {folder}: a study file shared between groups "
                "must not make metorigin read files elsewhere",
                f"copy the parameter file next to the study file and give its name, or {PACKAGED_PARAMS!r} for the "
                "one metorigin ships",
            )
        if not resolved.is_file():
            raise StudyFileError(
                str(path),
                "radiomics.params_file",
                f"{params!r} does not exist (looked for {resolved})",
                f"give the path of a pyradiomics parameter YAML, relative to the study file, or {PACKAGED_PARAMS!r} "
                "for the one metorigin ships",
            )
        data["radiomics"]["params_file"] = str(resolved)
    merged = _merge(plain_settings(get_settings(profile)), data)
    if seed is not None:
        merged["seed"] = seed
    try:
        return SETTINGS_ADAPTER.validate_python(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise StudyFileError(
            str(path), ".".join(str(p) for p in first["loc"]), _problem(first), _fix(first), more=len(exc.errors()) - 1
        ) from None


_UNKNOWN_KEY = ("extra_forbidden", "unexpected_keyword_argument")


def _problem(error: dict) -> str:
    if error["type"] in _UNKNOWN_KEY:
        return "unknown key"
    return f"{error['msg'].removeprefix('Value error, ')} (got {error.get('input')!r})"


def _fix(error: dict) -> str:
    if error["type"] in _UNKNOWN_KEY:
        return "remove the key or correct its spelling (every key with its default: `metorigin study`)"
    if error["type"] == "literal_error":
        return f"use {error['ctx']['expected']}"
    if error["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short"):
        return "give a value within the stated range"
    if error["type"] == "finite_number":
        return "give a finite number"
    if error["type"] == "value_error":
        return "change the value as the problem says"
    return "give a value of the stated type"
