"""Sweeps: a ``[sweep]`` table turns one config into a numbered list of tasks.

    [sweep]
    seeds = 4                      # run.seed = 0, 1, 2, 3 (or a list: seeds = [0, 7])

    [sweep.axes.width]             # an axis: config keys with lists of equal length, zipped
    model.width = [100, 1000]      #   (dotted keys, quoted or not; labels = [...] names them)

    [[sweep.axes.case]]            # an axis as an explicit list of cases, each a set of keys
    label = "relu"                 #   (label: the case's name in file names; default its number)
    model.activation = "relu"
    [[sweep.axes.case]]
    label = "sigmoid"
    model.activation = "sigmoid"
    integrator.method = "rk4"

The tasks are the Cartesian product of the axes in the order written (the first varies slowest,
the seeds fastest). A task's index is its position in that product, so it is stable as long as
the table is; its name (``width=100_case=relu_seed=3``) is readable and names its output file;
its key (``config.config_key`` of the resolved config) says what it computes. Every task's
config is validated when the sweep is expanded: a bad value names the task and the key.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import re
from dataclasses import dataclass

from . import apply_override, config_key, resolve
from .schema import SCHEMA, ConfigError

SWEEP_KEYS = ("seeds", "axes")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")     # axis names
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9._+-]+$")  # value labels, as label_of makes them
SEED_KEY = "run.seed"
MAX_LABEL = 40      # characters of a value's label; longer ones are cut and given a digest
MAX_NAME = 200      # characters of a task name: NAME.h5.part.new must fit in 255 bytes


@dataclass(frozen=True)
class Task:
    index: int
    name: str          # stable, readable, file-name safe: the output is NAME.h5
    overrides: tuple   # ((dotted key, value), ...) in axis order
    cfg: dict          # resolved
    key: str           # config.config_key(cfg)


@dataclass(frozen=True)
class Axis:
    name: str
    labels: tuple      # one per value
    settings: tuple    # one dict {dotted key: value} per value


def split_sweep(raw: dict) -> tuple[dict, dict | None]:
    """The config without its ``[sweep]`` table, and the table (None if there is none)."""
    raw = dict(raw)
    return raw, raw.pop("sweep", None)


def expand(raw: dict, table: dict | None, overrides=()) -> list:
    """The tasks of ``table`` over the config ``raw`` (parsed TOML without ``[sweep]``), each
    with ``overrides`` (``key=value`` strings, applied to every task first) and its axes'
    settings; a sweep without a table is one task named after nothing ('run')."""
    axes = parse_axes(table) if table is not None else []
    swept = {key for axis in axes for setting in axis.settings for key in setting}
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in swept:
            raise ConfigError(f"--set {item}: {key} is an axis of the sweep; change it in "
                              "[sweep] instead")
    tasks, by_name = [], {}
    for index, combo in enumerate(itertools.product(*(range(len(a.labels)) for a in axes))):
        name = "_".join(f"{a.name}={a.labels[i]}" for a, i in zip(axes, combo)) or "run"
        if len(name) > MAX_NAME:
            raise ConfigError(f"sweep task {index} would be named {name[:60]}... "
                              f"({len(name)} characters, at most {MAX_NAME} fit in a file "
                              "name): give the axes shorter names or labels (labels = [...])")
        if name in by_name:
            raise ConfigError(f"sweep tasks {by_name[name]} and {index} map to one output "
                              f"{name}.h5: give the axis distinct labels (labels = [...])")
        by_name[name] = index
        settings = tuple(item for a, i in zip(axes, combo) for item in a.settings[i].items())
        task_raw = _with_settings(raw, overrides, settings)
        try:
            cfg = resolve(task_raw)
        except ConfigError as exc:
            shown = ", ".join(f"{k} = {v!r}" for k, v in settings)
            raise ConfigError(f"sweep task {index} ({shown}): {exc}") from None
        tasks.append(Task(index, name, settings, cfg, config_key(cfg)))
    return tasks


def _with_settings(raw: dict, overrides, settings) -> dict:
    out = {s: dict(v) if isinstance(v, dict) else v for s, v in raw.items()}
    for item in overrides:
        apply_override(out, item)
    for dotted, value in settings:
        section, key = dotted.split(".")
        table = out.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] in the config is {table!r}, not a table")
        table[key] = value
    return out


def parse_axes(table) -> list:
    """The axes of a ``[sweep]`` table, checked; ConfigError naming the key otherwise."""
    if not isinstance(table, dict):
        raise ConfigError(f"[sweep] must be a table, got {table!r}")
    unknown = sorted(set(table) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f"unknown key sweep.{unknown[0]}; allowed keys in [sweep]: "
                          f"{', '.join(SWEEP_KEYS)} (axes go in [sweep.axes.NAME])")
    given = table.get("axes", {})
    if not isinstance(given, dict):
        raise ConfigError(f"sweep.axes = {given!r}: must be a table of named axes, "
                          "[sweep.axes.NAME]")
    axes = [_axis(name, spec) for name, spec in given.items()]
    if "seeds" in table:
        if "seed" in given:
            raise ConfigError("sweep.seeds and an axis named 'seed' both given: keep one")
        axes.append(_seed_axis(table["seeds"]))
    if not axes:
        raise ConfigError("[sweep] has no axes: give sweep.seeds or a [sweep.axes.NAME] table")
    seen: dict[str, str] = {}
    for axis in axes:
        for key in axis.settings[0]:
            if key in seen:
                raise ConfigError(f"{key} is swept by two axes, {seen[key]!r} and "
                                  f"{axis.name!r}: zip them into one axis")
            seen[key] = axis.name
    return axes


def _seed_axis(seeds) -> Axis:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"sweep.seeds = {seeds}: must be a number of seeds >= 1 or a list "
                              "of seeds")
        seeds = list(range(seeds))
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise ConfigError(f"sweep.seeds = {seeds!r}: must be a number of seeds >= 1 or a "
                          "non-empty list of distinct integers >= 0")
    return Axis("seed", tuple(str(s) for s in seeds), tuple({SEED_KEY: s} for s in seeds))


def _axis(name: str, spec) -> Axis:
    where = f"sweep.axes.{name}"
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"{where}: an axis name must be letters, digits, '_' or '-' (it is "
                          "part of file names)")
    if isinstance(spec, list):
        return _case_axis(name, where, spec)
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} = {spec!r}: must be a table of keys with lists of values, "
                          "or a list of cases [[sweep.axes.NAME]]")
    labels = spec.get("labels")
    columns = _dotted(where, {k: v for k, v in spec.items() if k != "labels"})
    if not columns:
        raise ConfigError(f"{where} sweeps no key: give e.g. model.width = [100, 1000]")
    lengths = set()
    for key, values in columns.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.{key} = {values!r}: must be a non-empty list of values")
        lengths.add(len(values))
    if len(lengths) > 1:
        raise ConfigError(f"{where}: the keys of one axis move together and need lists of one "
                          f"length; got lengths {sorted(lengths)} ({', '.join(columns)})")
    n = lengths.pop()
    if labels is None:
        labels = [label_of(v) for v in next(iter(columns.values()))]
    elif (not isinstance(labels, list) or len(labels) != n
          or not all(isinstance(x, str) and LABEL_PATTERN.match(x) for x in labels)):
        raise ConfigError(f"{where}.labels = {labels!r}: must be {n} names of letters, digits, "
                          "'.', '_', '+' or '-'")
    settings = tuple({key: values[i] for key, values in columns.items()} for i in range(n))
    return Axis(name, tuple(labels), settings)


def _case_axis(name: str, where: str, cases: list) -> Axis:
    if not cases or not all(isinstance(c, dict) for c in cases):
        raise ConfigError(f"{where} = {cases!r}: a list of cases must be non-empty tables "
                          f"([[{where}]])")
    labels, settings = [], []
    for i, case in enumerate(cases):
        label = case.get("label", str(i))
        if not isinstance(label, str) or not LABEL_PATTERN.match(label):
            raise ConfigError(f"{where}[{i}].label = {label!r}: must be letters, digits, '.', "
                              "'_', '+' or '-'")
        setting = _dotted(f"{where}[{i}]", {k: v for k, v in case.items() if k != "label"})
        if not setting:
            raise ConfigError(f"{where}[{i}] sets no key")
        if settings and set(setting) != set(settings[0]):
            raise ConfigError(f"{where}[{i}] sets {sorted(setting)} but case 0 sets "
                              f"{sorted(settings[0])}: every case of an axis sets the same keys")
        labels.append(label)
        settings.append(setting)
    return Axis(name, tuple(labels), tuple(settings))


def _dotted(where: str, table: dict) -> dict:
    """{section.key: value} from dotted keys (``"model.width" = ...``) or nested tables
    (``model.width = ...``), each checked against the schema."""
    out = {}
    for first, value in table.items():
        if "." in first:
            items = [(first, value)]
        elif isinstance(value, dict):
            items = [(f"{first}.{k}", v) for k, v in value.items()]
        else:
            raise ConfigError(f"{where}.{first}: a swept key is section.key, e.g. model.width")
        for dotted, v in items:
            parts = dotted.split(".")
            if len(parts) != 2 or parts[0] not in SCHEMA or parts[1] not in SCHEMA[parts[0]]:
                raise ConfigError(f"{where}: {dotted!r} is not a config key (section.key with "
                                  f"section one of {', '.join(SCHEMA)}; see docs/config.md)")
            out[dotted] = v
    return out


def label_of(value) -> str:
    """A value as it appears in task names: compact, file-name safe, at most MAX_LABEL
    characters."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:g}" if math.isfinite(value) else str(value)
    elif isinstance(value, list):
        text = "-".join(label_of(v) for v in value)
    else:
        text = str(value)
    text = re.sub(r"[^A-Za-z0-9._+-]", "", text.replace(" ", "")) or "x"
    if len(text) > MAX_LABEL:  # e.g. a whole data set: its start and a digest of the value
        digest = hashlib.sha256(repr(value).encode()).hexdigest()[:8]
        text = f"{text[:MAX_LABEL - 9]}.{digest}"
    return text
