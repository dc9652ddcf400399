"""Loops from a config file: one DAG per loop, each with its own settings.

The loops file (YAML; ``include/loops.yaml``, or the path in ``AL_LOOPS_FILE``) lists the loops::

    loops:
      - name: pets
        settings:            # LoopSettings and DagSettings fields; AL_* variables give the rest
          bucket: my-bucket
          prefix: pets
          endpoint_name: pets-detector
          alert_sns_topic_arn: arn:aws:sns:us-east-1:123456789012:loops

Each loop becomes the DAG ``active_learning__<name>``, in the file's order. A bad entry never removes
the other loops' DAGs: its problems are recorded and its DAG fails every task at once naming the
loop, the setting and the value (as a bad ``AL_*`` value does). Only a file that cannot be read at
all stops the parse, with Airflow's import error naming it. Without a loops file: the one DAG
``active_learning`` from ``AL_*`` variables. No network and no metadata-DB access here (parse time).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from active_learning.settings import DagSettings, EnvironmentDefaults, LoopSettings, _with_suggestion

LOOPS_FILE_VARIABLE = "AL_LOOPS_FILE"
DEFAULT_LOOPS_FILE = Path(__file__).parents[2] / "include" / "loops.yaml"
SINGLE_DAG_ID = "active_learning"
LOOP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# settings two loops may not share: they would read and write the same data, or update one endpoint
EXCLUSIVE = ("endpoint_name",)


class LoopsFileError(ValueError):
    """The loops file as a whole cannot be read (its loops are unknown): the parse fails naming it."""


@dataclass
class Loop:
    """One loop: its name, its DAG id, its Params' specs and DAG knobs, and the problems found in them."""

    name: str
    dag_id: str
    specs: dict[str, dict[str, Any]]
    knobs: DagSettings
    problems: list[str]

    @classmethod
    def of(cls, name: str, dag_id: str, defaults: EnvironmentDefaults) -> Loop:
        return cls(name, dag_id, defaults.param_specs(), defaults.dag_settings(), defaults.problems)


def loops_file(environ: Mapping[str, str]) -> Path | None:
    """The loops file in use: ``AL_LOOPS_FILE`` (which must exist), else ``include/loops.yaml`` if any."""
    given = environ.get(LOOPS_FILE_VARIABLE, "").strip()
    if given:
        path = Path(given)
        if not path.is_file():
            raise LoopsFileError(f"{LOOPS_FILE_VARIABLE}={given!r}: no such file")
        return path
    return DEFAULT_LOOPS_FILE if DEFAULT_LOOPS_FILE.is_file() else None


def read_loops(environ: Mapping[str, str]) -> list[Loop]:
    """The loops to build DAGs for, in the file's order (one ``active_learning`` loop without a file).

    :raises LoopsFileError: when the file is not YAML or has no ``loops`` list.
    """
    path = loops_file(environ)
    if path is None:
        return [Loop.of("", SINGLE_DAG_ID, EnvironmentDefaults(environ))]
    import yaml  # only with a loops file

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise LoopsFileError(f"loops file {path}: {err}") from err
    entries = document.get("loops") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise LoopsFileError(f"loops file {path}: expected a non-empty list under 'loops:'")
    return loops_from_entries(entries, environ, str(path))


def loops_from_entries(entries: list[Any], environ: Mapping[str, str], where: str) -> list[Loop]:
    """A :class:`Loop` per entry; what is wrong with an entry goes into its problems, never raised."""
    known = [f.name for f in fields(LoopSettings)] + [f.name for f in fields(DagSettings)]
    loops: list[Loop] = []
    taken: dict[tuple[str, Any], str] = {}
    for number, entry in enumerate(entries, start=1):
        entry = entry if isinstance(entry, dict) else {}
        name = str(entry.get("name", "")).strip()
        problems: list[str] = []
        if not LOOP_NAME.match(name):
            problems.append(
                f"loops file {where}, entry {number}: name={entry.get('name')!r} must be 1-63 lower-case "
                "letters, digits, '_' and '-'"
            )
            name = f"entry_{number}"
        if any(loop.name == name for loop in loops):
            problems.append(f"loops file {where}: loop {name!r} is named twice (entry {number})")
            name = f"{name}_entry_{number}"
        values = entry.get("settings") or {}
        if not isinstance(values, dict):
            problems.append(f"loop {name}: settings must be a mapping of setting names to values")
            values = {}
        unknown = sorted(str(key) for key in values if key not in known)
        if unknown:
            problems.append(
                f"loop {name}: unknown setting(s) "
                + ", ".join(_with_suggestion(key, known) for key in unknown)
            )
        defaults = EnvironmentDefaults(
            environ,
            overrides={key: value for key, value in values.items() if key in known},
            overrides_source=f"loop {name}: setting",
            problems=problems,
        )
        loop = Loop.of(name, f"{SINGLE_DAG_ID}__{name}", defaults)
        specs = loop.specs
        for setting_name in EXCLUSIVE:
            value = specs[setting_name]["default"]
            other = taken.setdefault((setting_name, value), name)
            if other != name:
                problems.append(f"loop {name}: setting {setting_name}={value!r} is loop {other}'s too")
        location = (specs["bucket"]["default"], specs["prefix"]["default"])
        other = taken.setdefault(("data", location), name)
        if other != name:
            problems.append(f"loop {name}: s3://{location[0]}/{location[1]} is loop {other}'s data too")
        loops.append(loop)
    return loops
