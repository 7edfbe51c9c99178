"""Load ``appliance.toml`` into the frozen :class:`Config`, reporting every problem at once.

A technician in the field edits this file by hand and restarts the unit. One run must tell
them *everything* that is wrong (each line naming the file, the key, the value and what to
write instead), never one problem per restart and never a traceback. So nothing here stops
at the first problem: one generic walker checks each TOML table against the dataclasses of
:mod:`appliance.config.schema` (types, ranges, choices, patterns, custom checks, unknown keys
with a "did you mean", duplicate modems), collects every problem, and raises one
:class:`~appliance.errors.ConfigError` holding them all.

The schema lives in :mod:`appliance.config.schema`; its classes are re-exported here so the
rest of the appliance imports configuration from one place.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import re
import tomllib
import types
from collections.abc import Mapping, Sequence
from functools import cache
from os import PathLike
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from appliance.config.schema import (
    AlarmsConfig, AuditConfig, Config, FleetConfig, LimitsConfig, LoggingConfig, ModemConfig,
    PrivacyConfig, RegistryConfig, ReliabilityConfig, RepliesConfig, StatusConfig, UnitConfig,
    show_number,
)
from appliance.config.where import Locator
from appliance.errors import ConfigError

__all__ = [
    "AlarmsConfig", "AuditConfig", "Config", "ConfigError", "LimitsConfig", "LoggingConfig",
    "ModemConfig", "PrivacyConfig", "RegistryConfig", "RepliesConfig", "ReliabilityConfig",
    "StatusConfig",
    "UnitConfig", "config_from_dict", "config_from_text", "load_config", "FleetConfig",
    "FIRMWARE_CONFIG",
]

#: What a unit is flashed with (configuration, reply templates, trusted root), shipped
#: beside the package: in a checkout, or under /usr/lib/nsor-appliance/app when installed.
FIRMWARE_CONFIG = Path(__file__).resolve().parents[2] / "firmware_config"

_BAD = object()  # a value that failed validation; its problem is already reported

_EXPECTED = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
             Path: "a path (a string)"}


def load_config(path: Path | str) -> Config:
    """Read, parse and validate a configuration file; relative paths resolve against its folder.

    Raises :class:`ConfigError` listing every problem, each prefixed with ``path`` as given.
    """
    path = Path(path)
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{name}: file not found; check the path (a commented example "
                          f"is firmware_config/appliance.toml)") from exc
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the file ({exc.strerror or exc}); check that it "
                          f"is a file readable by the service user") from exc
    try:
        text = raw.decode("utf-8-sig")  # tolerate the BOM that Windows editors add
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{name}: line {line}: not valid UTF-8; save the file as UTF-8") from exc
    source = path.absolute()
    return _build_config(_parse(text, name), source=source, source_name=name,
                         base_dir=source.parent, text=text)


def config_from_text(text: str, *, source_name: str = "<text>", base_dir: Path) -> Config:
    """Parse and validate TOML text, as :func:`load_config` does for a file."""
    return _build_config(_parse(text, source_name), source=None, source_name=source_name,
                         base_dir=base_dir, text=text)


def config_from_dict(data: Mapping[str, Any], *, source: Path | None = None,
                     base_dir: Path | None = None) -> Config:
    """Validate an already-parsed mapping (the demo builds its config this way).

    Arrays may be lists or tuples and paths may be :class:`~pathlib.Path` objects. Relative
    paths resolve against ``base_dir``, else the folder of ``source``, else the current
    directory.
    """
    if base_dir is None:
        base_dir = source.parent if source is not None else Path.cwd()
    return _build_config(data, source=source, source_name=str(source or "<config>"),
                         base_dir=base_dir)


def _parse(text: str, source_name: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib (3.11) puts the position only in the message: "... (at line 3, column 5)".
        message = str(exc)
        where = re.search(r" \(at (line (\d+), column (\d+)|end of document)\)$", message)
        if where:
            message = message[:where.start()]
            place = where.group(1)
        else:
            place = "somewhere"
        raise ConfigError(f"{source_name}: {place}: TOML syntax error: {message}; check the "
                          f"quotes, brackets and '=' there (and that no key is set twice)") from exc


class _Walk:
    """The problems found so far in one configuration, each prefixed with its file name and
    placed by line and modem name (:mod:`appliance.config.where`)."""

    def __init__(self, source_name: str, locator: Locator) -> None:
        self.source_name = source_name
        self.locator = locator
        self.problems: list[str] = []

    def report(self, path: str, message: str) -> None:
        self.problems.append(f"{self.source_name}: {self.locator.where(path)}: {message}")


def _build_config(data: Mapping[str, Any], *, source: Path | None, source_name: str,
                  base_dir: Path, text: str | None = None) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source_name}: expected a table of sections, got {_show(data)}")
    walk = _Walk(source_name, Locator(data, text))
    config = _build_section(Config, data, "", walk)
    if walk.problems or not isinstance(config, Config):
        raise ConfigError(walk.problems)
    return _resolve_paths(dataclasses.replace(config, source=source), base_dir.absolute())


def _build_section(cls: type, table: Mapping[str, Any], path: str, walk: _Walk) -> Any:
    """Validate one TOML table against a dataclass; the instance, or ``_BAD`` if anything failed."""
    schema = [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
    known = [f.name for f in schema]
    for name in table:
        if name not in known:
            walk.report(_join(path, name), _unknown_key(str(name), known))
    hints = _hints(cls)
    values: dict[str, Any] = {}
    ok = True
    for f in schema:
        where = _join(path, f.name)
        if f.name in table:
            value = _convert(hints[f.name], f.metadata, table[f.name], where, walk)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            example = f.metadata.get("example")
            walk.report(where, f"missing required key; add e.g. {example}" if example
                        else "missing required key")
            value = _BAD
        elif dataclasses.is_dataclass(hints[f.name]):
            value = _build_section(hints[f.name], {}, where, walk)  # defaults, still resolved
        else:
            continue
        if value is _BAD:
            ok = False
        else:
            values[f.name] = value
    if not ok:
        return _BAD
    instance = cls(**values)
    for name, message in getattr(instance, "cross_check", lambda: ())():
        walk.report(_join(path, name), message)
    return instance


def _convert(hint: Any, meta: Mapping[str, Any], value: Any, where: str, walk: _Walk) -> Any:
    """Check one value against its declared type and metadata; the typed value, or ``_BAD``."""
    origin, args = get_origin(hint), get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            walk.report(where, f"expected a table [{where}], got {_described(value)}")
            return _BAD
        return _build_section(hint, value, where, walk)
    if origin is tuple:
        return _convert_array(args[0], meta, value, where, walk)
    if origin in (Union, types.UnionType):
        inner = next(a for a in args if a is not type(None))
        # TOML has no null: an absent key or "" means "not set".
        return None if value == "" else _convert(inner, meta, value, where, walk)
    typed = _scalar(hint, value)
    if typed is _BAD:
        walk.report(where, f"expected {_EXPECTED[hint]}, got {_described(value)}"
                    f"{_type_fix(hint, value)}")
        return _BAD
    problem = _check_value(typed, meta)
    if problem:
        walk.report(where, problem)
        return _BAD
    return typed


def _convert_array(item: Any, meta: Mapping[str, Any], value: Any, where: str,
                   walk: _Walk) -> Any:
    tables = dataclasses.is_dataclass(item)
    if not isinstance(value, Sequence) or isinstance(value, str):
        fix = (f"; write [[{where}]] (double brackets) for each entry" if tables else
               f"; write it as an array: [{_show(value)}]")
        walk.report(where, f"expected an array, got {_described(value)}{fix}")
        return _BAD
    converted = [_convert(item, meta, v, f"{where}[{i}]", walk) for i, v in enumerate(value)]
    if tables:
        _check_unique(item, value, where, walk)
    return _BAD if any(v is _BAD for v in converted) else tuple(converted)


def _check_unique(cls: type, tables: Sequence[Any], where: str, walk: _Walk) -> None:
    """Report entries that repeat a ``unique`` key (judged on raw values, so a modem with
    another mistake still counts)."""
    for f in dataclasses.fields(cls):
        identity = f.metadata.get("unique")
        if identity is None:
            continue
        seen: dict[Any, int] = {}
        for i, table in enumerate(tables):
            raw = table.get(f.name) if isinstance(table, Mapping) else None
            ident = identity(raw) if isinstance(raw, str) else None
            if ident is None:
                continue
            if ident in seen:
                first = walk.locator.describe(f"{where}[{seen[ident]}]", f.name)
                walk.report(f"{where}[{i}].{f.name}", f"{_show(raw)} repeats the {f.name} of "
                            f"{first}; each entry needs its own {f.name}")
            else:
                seen[ident] = i


def _scalar(hint: Any, value: Any) -> Any:
    if hint is bool or isinstance(value, bool):
        # bool is an int subclass, but true is never a number here (nor 1 a boolean)
        return value if hint is bool and isinstance(value, bool) else _BAD
    if hint is int:
        return value if isinstance(value, int) else _BAD
    if hint is float:
        return float(value) if isinstance(value, (int, float)) else _BAD
    if hint is str:
        return value if isinstance(value, str) else _BAD
    if hint is Path:
        ok = isinstance(value, PathLike) or (isinstance(value, str) and value != "")
        return Path(value) if ok else _BAD
    raise TypeError(f"config schema: unsupported type {hint!r}")  # a schema bug, not user input


def _check_value(value: Any, meta: Mapping[str, Any]) -> str | None:
    """The metadata checks, in the order a technician would fix them; ``None`` if fine."""
    choices = meta.get("choices") or ()
    if choices and value not in choices:
        listed = ", ".join(_show(c) for c in choices)
        tip = ""
        if isinstance(value, str):
            by_lower = {str(c).lower(): c for c in choices}
            close = difflib.get_close_matches(value.lower(), by_lower, n=1)
            tip = f"; did you mean {_show(by_lower[close[0]])}?" if close else ""
        return f"{_show(value)} is not {meta['what']} (choose one of {listed}){tip}"
    bounds = meta.get("bounds")
    if bounds and not bounds[0] <= value <= bounds[1]:  # NaN fails both comparisons too
        unit = f" {meta['unit']}" if meta.get("unit") else ""
        low, high = show_number(bounds[0]), show_number(bounds[1])
        return f"{show_number(value)} is out of range; choose a value from {low} to {high}{unit}"
    pattern = meta.get("pattern")
    if pattern is not None and not pattern.fullmatch(value):
        return f"{_show(value)} is not valid; expected {meta.get('hint') or pattern.pattern}"
    check = meta.get("check")
    if check is not None:
        problem = check(value)
        if problem:
            return f"{_show(value)}: {problem}"
    return None


def _resolve_paths(config: Config, base_dir: Path) -> Config:
    """Anchor relative paths: ``base="config"`` at the config's folder, ``"data_dir"`` at the
    (already anchored) data directory, so the service never depends on its working directory."""
    unit = _anchor(config.unit, {"config": base_dir})
    bases = {"config": base_dir, "data_dir": unit.data_dir}
    changes: dict[str, Any] = {"unit": unit}
    for f in dataclasses.fields(config):
        section = getattr(config, f.name)
        if f.name != "unit" and dataclasses.is_dataclass(section):
            changes[f.name] = _anchor(section, bases)
    return dataclasses.replace(config, **changes)


def _anchor(section: Any, bases: Mapping[str, Path]) -> Any:
    changes = {}
    for f in dataclasses.fields(section):
        value, base = getattr(section, f.name), f.metadata.get("base")
        if base and isinstance(value, Path) and not value.is_absolute():
            changes[f.name] = bases[base] / value
    return dataclasses.replace(section, **changes) if changes else section


# --- wording -------------------------------------------------------------------------------


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


@cache
def _homes() -> dict[str, tuple[str, ...]]:
    """Key name -> the sections that define it, to say where a misplaced key belongs."""
    homes: dict[str, list[str]] = {}
    for section in dataclasses.fields(Config):
        hint = _hints(Config)[section.name]
        cls = get_args(hint)[0] if get_origin(hint) is tuple else hint
        if not dataclasses.is_dataclass(cls):
            continue
        label = f"[[{section.name}]]" if cls is not hint else f"[{section.name}]"
        for f in dataclasses.fields(cls):
            homes.setdefault(f.name, []).append(label)
    return {k: tuple(v) for k, v in homes.items()}


def _unknown_key(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1) or difflib.get_close_matches(
        name.lower(), known, n=1)
    if close:
        return f"unknown key; did you mean '{close[0]}'?"
    if name in _homes():
        return f"unknown key here; '{name}' belongs in {' or '.join(_homes()[name])}"
    return f"unknown key; this table accepts {', '.join(known)}"


def _join(path: str, name: Any) -> str:
    name = str(name)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        name = json.dumps(name, ensure_ascii=False)  # a quoted TOML key, shown quoted
    return f"{path}.{name}" if path else name


def _show(value: Any) -> str:
    """A value as it would be written in TOML, shortened."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, PathLike)):
        text = str(value)
        # A regex is written as a TOML literal string; showing it escaped would mislead.
        literal = "\\" in text and "'" not in text and "\n" not in text
        text = f"'{text}'" if literal else json.dumps(text, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + "..." + text[0]
    if isinstance(value, Mapping):
        return "{...}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_show(v) for v in value[:5]) + (", ...]" if len(value) > 5 else "]")
    return repr(value) if isinstance(value, float) else str(value)


def _described(value: Any) -> str:
    kinds = [(bool, "true/false"), (int, "a whole number"), (float, "a number"),
             (str, "a string"), (Mapping, "a table"), (Sequence, "an array"),
             (datetime.datetime, "a date-time"), (datetime.date, "a date"),
             (datetime.time, "a time")]
    kind = next((k for t, k in kinds if isinstance(value, t)), type(value).__name__)
    return f"{_show(value)} ({kind})"


def _type_fix(hint: Any, value: Any) -> str:
    """What to write instead, for the common slips (quotes around numbers, and back)."""
    if hint in (str, Path) and isinstance(value, (int, float, datetime.time)) \
            and not isinstance(value, bool):
        return f'; put it in quotes: "{value}"'
    if isinstance(value, str):
        if hint is bool and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return "; write true or false, without quotes"
        if hint in (int, float) and re.fullmatch(r"[+-]?[0-9_]+(\.[0-9_]+)?", value.strip()):
            return f"; write it without quotes: {value.strip()}"
    if hint is int and isinstance(value, float) and value.is_integer():
        return f"; write it without a decimal point: {int(value)}"
    return ""

