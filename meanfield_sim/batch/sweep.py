"""A sweep on disk: its tasks (``config.sweep``), their outputs in one folder, and a manifest.

    DIR/sweep.json     the sweep: config path and text, --set overrides, and per task its
                       index, name, key and overrides (what ``collect`` reads)
    DIR/NAME.h5        task NAME's output (NAME.h5.part, NAME.h5.ckpt while it goes)
    DIR/logs/          per-task logs of ``--jobs`` and of SLURM array tasks

Running a task is idempotent (:func:`run_task`): a complete output of the same key is skipped,
an interrupted one resumed from its checkpoint, a foreign or unreadable one reported and left
alone. The manifest is written atomically and only ever replaced by an identical one, so a
folder never holds the outputs of two different sweeps.
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from .. import config as config_mod
from ..config.sweep import Task, expand, split_sweep

MANIFEST = "sweep.json"


class SweepError(Exception):
    """The sweep cannot be set up (bad folder, another sweep's folder, index out of range)."""


@dataclass
class Sweep:
    config_path: Path
    config_text: str
    overrides: tuple
    tasks: list

    @classmethod
    def load(cls, config_path, overrides=()) -> "Sweep":
        """The sweep of the config at ``config_path`` (a config without ``[sweep]`` is one
        task); ConfigError if the table or any task's config is invalid."""
        path = Path(config_path)
        raw, table = split_sweep(config_mod.read(path))
        return cls(path, path.read_text(encoding="utf-8"), tuple(overrides),
                   expand(raw, table, overrides))

    def task(self, index: int) -> Task:
        if not 0 <= index < len(self.tasks):
            raise SweepError(f"task index {index} is out of range: this sweep has "
                             f"{len(self.tasks)} tasks, 0 to {len(self.tasks) - 1}")
        return self.tasks[index]

    def manifest(self) -> dict:
        return {"config_path": str(self.config_path.resolve()), "config_text": self.config_text,
                "overrides": list(self.overrides),
                "tasks": [{"index": t.index, "name": t.name, "key": t.key,
                           "overrides": {k: v for k, v in t.overrides}} for t in self.tasks]}

    def prepare(self, folder: Path) -> None:
        """Make ``folder`` (and its logs/) and write the manifest, or check that the one there
        is this sweep's."""
        folder = Path(folder)
        try:
            (folder / "logs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SweepError(f"cannot create the output folder {folder}: {exc.strerror}") \
                from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise SweepError(f"the output folder {folder} is not writable")
        mine = self.manifest()
        there = read_manifest(folder, missing_ok=True)
        if there is not None:
            if [t["key"] for t in there["tasks"]] != [t["key"] for t in mine["tasks"]]:
                raise SweepError(f"{folder} holds another sweep ({there['config_path']}, "
                                 f"{len(there['tasks'])} tasks; see {folder / MANIFEST}): "
                                 "choose another output folder with -o")
            if there == mine:
                return
        new = folder / f".{MANIFEST}.{uuid.uuid4().hex}"
        new.write_text(json.dumps(mine, indent=1))
        os.replace(new, folder / MANIFEST)


def read_manifest(folder, missing_ok: bool = False) -> dict | None:
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        if missing_ok:
            return None
        raise SweepError(f"{folder} is not a sweep folder: it has no {MANIFEST} (made by "
                         "`meanfield-sim sweep` or `meanfield-sim slurm`)") from None
    except (OSError, ValueError) as exc:
        raise SweepError(f"{path} cannot be read: {exc}") from None


def output_of(folder, task_name: str) -> Path:
    return Path(folder) / f"{task_name}.h5"


def task_from_env(index: int | None) -> int:
    """The task index: given, or SLURM's ``SLURM_ARRAY_TASK_ID``."""
    if index is not None:
        return index
    value = os.environ.get("SLURM_ARRAY_TASK_ID")
    if value is None:
        raise SweepError("no task index: pass --index I (or run inside a SLURM job array, "
                         "which sets SLURM_ARRAY_TASK_ID)")
    try:
        return int(value)
    except ValueError:
        raise SweepError(f"SLURM_ARRAY_TASK_ID = {value!r} is not an integer") from None
