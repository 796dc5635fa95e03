"""One table of a sweep's results (``meanfield-sim collect DIR -o summary.csv``).

One row per task of the manifest, in index order, whatever state its output is in:

    complete     NAME.h5 of this task's key; final figures from ``analysis.quantities.summary``
    interrupted  NAME.h5.part marked interrupted (t reached, records, and whether a checkpoint
                 lets it resume)
    running      NAME.h5.part whose writer is alive
    killed       NAME.h5.part still 'running' but its writer is gone
    failed       NAME.h5.part marked failed, with its message
    foreign      an output of another config (another key), or an unreadable file
    missing      no output at all

Missing, failed and incomplete tasks are listed, never dropped.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ..io.checkpoint import checkpoint_path
from ..io.h5file import open_run_file, text_of
from ..io.publish import is_locked, partial_path
from ..runner import file_key
from .sweep import output_of, read_manifest

FIXED = ("index", "name", "status", "t", "records", "checkpoint", "file", "message")


def collect(folder) -> list:
    """The rows of the sweep in ``folder`` (see the module docstring)."""
    manifest = read_manifest(folder)
    rows = []
    for task in manifest["tasks"]:
        row = {"index": task["index"], "name": task["name"],
               **{k: _cell(v) for k, v in task["overrides"].items()}}
        row.update(_state(output_of(folder, task["name"]), task["key"]))
        rows.append(row)
    return rows


def _state(out: Path, key: str) -> dict:
    partial = partial_path(out)
    path = out if out.exists() else partial if partial.exists() else None
    if path is None:
        return {"status": "missing"}
    found = file_key(path)
    if found != key:
        return {"status": "foreign", "file": path.name,
                "message": "unreadable" if found is None else f"config key {found}, not {key}"}
    with open_run_file(path) as f:
        a = f.attrs
        status = text_of(a["status"])
        row = {"file": path.name, "t": float(a["t_reached"]), "records": int(a["n_records"]),
               "message": text_of(a["message"])}
    if status == "running":
        status = "running" if is_locked(path) else "killed"
    row["status"] = status
    if status == "complete":
        from ..analysis.dataset import open_run
        from ..analysis.quantities import summary
        for name, value in summary(open_run(path)).items():
            if isinstance(value, dict):
                row[name] = value["final"]
    else:
        row["checkpoint"] = "yes" if checkpoint_path(out).exists() else "no"
    return row


def _cell(value):
    return " ".join(map(str, value)) if isinstance(value, list) else value


def to_csv(rows: list) -> str:
    columns = list(dict.fromkeys([*FIXED[:2], *(k for r in rows for k in r if k not in FIXED),
                                  *FIXED[2:]]))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: (f"{v:.10g}" if isinstance(v, float) else v)
                         for c, v in row.items()})
    return out.getvalue()
