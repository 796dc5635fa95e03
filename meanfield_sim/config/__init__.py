"""Run configuration: TOML in, one validated, fully resolved nested dict out.

Every key a run reads is declared once in :data:`SCHEMA` (``schema.py``) with its type, default
and allowed values; :func:`resolve` checks a user's TOML against it, fills in defaults and applies
the cross-key rules of ``rules.py``, so that the rest of the package can index the result without
checking anything again. A bad value raises :class:`ConfigError` naming the key, the value and
what is allowed. The resolved dict is written verbatim (as TOML, :func:`to_toml`) into every
output file, so that a file alone reproduces its run.
"""
from __future__ import annotations

import copy
import hashlib
import math
import tomllib
from pathlib import Path

from .rules import check_consistency
from .schema import (ACTIVATIONS, BINARY_LOSSES, GROUPS, LOSSES, METHODS, MODEL_KINDS, REQUIRED,
                     SCHEMA, ConfigError, Key, _NUM, _type_names, unrepresentable)

__all__ = ["ACTIVATIONS", "BINARY_LOSSES", "GROUPS", "LOSSES", "METHODS", "MODEL_KINDS", "SCHEMA",
           "ConfigError",
           "Key", "apply_override", "apply_sections", "config_key", "load", "loads", "read",
           "reference_markdown", "resolve", "to_toml", "toml_value"]


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Read a TOML config, apply ``key=value`` overrides (TOML values, dotted keys), validate."""
    raw = read(path)
    for item in overrides:
        apply_override(raw, item)
    return resolve(raw)


def read(path: str | Path) -> dict:
    """The TOML file at ``path`` as parsed (not validated); errors as :class:`ConfigError`."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (a TOML file is)") \
            from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def loads(text: str) -> dict:
    """Validate a config given as TOML text."""
    try:
        return resolve(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from None


def apply_override(raw: dict, item: str) -> None:
    """Apply one ``section.key=value`` override; the value is parsed as TOML (bare words as strings)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must have the form section.key=value")
    dotted, text = (s.strip() for s in item.split("=", 1))
    parts = dotted.split(".")
    if len(parts) != 2 or parts[0] not in SCHEMA:
        raise ConfigError(f"override key {dotted!r} must be section.key with section one of "
                          f"{sorted(SCHEMA)}")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word such as relu
    _table_of(raw, parts[0], f"override {item!r}")[parts[1]] = value


def apply_sections(raw: dict, sections: dict) -> None:
    """Override whole keys per section, in place: ``{"model": {"width": 500}, ...}`` (the
    Python form of ``--set model.width=500``); validation is left to :func:`resolve`."""
    for section, values in sections.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{section}={values!r}: pass a section's overrides as a dict, e.g. "
                              f"{section}={{'key': value}}")
        _table_of(raw, section, f"{section}={values!r}").update(values)


def _table_of(raw: dict, section: str, context: str) -> dict:
    """``raw[section]`` (created empty if missing); a ConfigError if it is not a table."""
    table = raw.setdefault(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{context}: [{section}] in the config is {table!r}, not a table")
    return table


def resolve(raw: dict) -> dict:
    """Check ``raw`` against :data:`SCHEMA` and return a new dict with every default filled in."""
    if not isinstance(raw, dict):
        raise ConfigError("config must be a TOML table")
    unknown = sorted(set(raw) - set(SCHEMA))
    if "sweep" in unknown:
        raise ConfigError("this config has a [sweep] table: run its tasks with `meanfield-sim "
                          "sweep` (or `sweep --index I` for one)")
    if unknown:
        raise ConfigError(f"unknown config section [{unknown[0]}]; allowed sections: "
                          f"{', '.join(sorted(SCHEMA))}")
    out: dict[str, dict] = {}
    for section, keys in SCHEMA.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(f"[{section}] must be a table, got {given!r}")
        unknown = sorted(set(given) - set(keys))
        if unknown:
            raise ConfigError(f"unknown key {section}.{unknown[0]} = {given[unknown[0]]!r}; "
                              f"allowed keys in [{section}]: {', '.join(keys)}")
        out[section] = {}
        for name, key in keys.items():
            out[section][name] = _check_key(f"{section}.{name}", key, given.get(name, key.default))
    check_consistency(out)
    return out


def _check_key(dotted: str, key: Key, value):
    if value is REQUIRED:
        raise ConfigError(f"missing required key {dotted} ({key.doc})")
    if isinstance(value, bool) and bool not in key.types:
        raise ConfigError(f"{dotted} = {value!r}: expected {_type_names(key.types)}")
    if not isinstance(value, key.types):
        raise ConfigError(f"{dotted} = {value!r}: expected {_type_names(key.types)}")
    found = unrepresentable(dotted, value)
    if found:
        raise ConfigError(f"{found[0]} = {found[1]!r}: {found[2]}")
    if key.types == _NUM:
        value = float(value)
        if math.isnan(value):
            raise ConfigError(f"{dotted} = nan: must be a number")
    if key.choices is not None and value not in key.choices:
        raise ConfigError(f"{dotted} = {value!r}: must be one of {', '.join(key.choices)}")
    if key.check is not None:
        problem = key.check(value)
        if problem:
            raise ConfigError(f"{dotted} = {value!r}: {problem}")
    return copy.deepcopy(value)


OPERATIONAL_KEYS = (("run", "threads"), ("run", "checkpoint_seconds"), ("record", "flush_every"))
"""Keys that change how a run is carried out but not one number it computes."""


def config_key(cfg: dict) -> str:
    """A short stable hash of what a resolved config computes (its TOML without the
    :data:`OPERATIONAL_KEYS`): equal keys, equal trajectories. It names sweep tasks and ties
    files and checkpoints to their run."""
    kept = {section: {k: v for k, v in values.items() if (section, k) not in OPERATIONAL_KEYS}
            for section, values in cfg.items()}
    return hashlib.sha256(to_toml(kept).encode()).hexdigest()[:16]


def to_toml(cfg: dict) -> str:
    """Serialise a resolved config (without ``derived``) as TOML; ``loads`` of it gives it back."""
    lines = []
    for section, values in cfg.items():
        if section == "derived":
            continue
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def reference_markdown() -> str:
    """Every config key with its type, default and meaning, as Markdown (docs/config.md)."""
    lines = ["# Config reference", "",
             "Generated from `meanfield_sim/config/schema.py` by `python -m meanfield_sim.config`; "
             "a test keeps it current.", ""]
    for section, keys in SCHEMA.items():
        lines += [f"## [{section}]", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for name, key in keys.items():
            default = "required" if key.default is REQUIRED else f"`{toml_value(key.default)}`"
            meaning = key.doc + (f"; one of {', '.join(key.choices)}" if key.choices else "")
            lines.append(f"| `{name}` | {_type_names(key.types)} | {default} | {meaning} |")
        lines.append("")
    from . import sweep  # not in SCHEMA: a [sweep] table makes tasks, it configures no run

    lines += ["## [sweep]", "", sweep.__doc__.replace("``", "`").strip(), ""]
    return "\n".join(lines)
