"""The benchmark's agreement check: every available peer (NumPy, PyTorch autograd, torch.compile,
JAX) makes the same step as the project on the --quick cases, and the check does fail on a wrong
result. With MEANFIELD_BENCH_PEERS=1 (CI) a missing torch or jax is a failure; otherwise the
missing peers are reported as a warning and NumPy is still checked."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench.py"
PEERS_REQUIRED = os.environ.get("MEANFIELD_BENCH_PEERS") == "1"


def run_check(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), "--quick", "--check-only",
                           "--out", str(tmp_path / "check"), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_every_available_peer_agrees_with_the_project(tmp_path):
    done = run_check(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "check.json").read_text())
    checked, missing = result["peers"], result["missing"]
    header = next(line for line in done.stdout.splitlines() if line.startswith("| case |"))
    assert "numpy" in checked
    for peer in checked:
        assert f"| {peer} |" in header, (peer, header)
        assert all(case["agreement"][peer]["ok"] for case in result["cases"])
    for peer in missing:
        assert f"Peer {peer}: missing" in done.stdout
    if PEERS_REQUIRED:
        assert not missing, f"MEANFIELD_BENCH_PEERS=1 but peers are missing: {missing}"
    elif missing:
        warnings.warn(f"benchmark peers not checked: {missing}")


def test_a_perturbed_project_step_fails_the_check(tmp_path):
    done = run_check(tmp_path, "--peers", "numpy", "--dtypes", "float64", "--perturb", "1e-6")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED: the peers disagree with this project" in done.stdout
    result = json.loads((tmp_path / "check.json").read_text())
    errors = [case["agreement"]["numpy"]["max_error"] for case in result["cases"]]
    assert np.allclose(errors, 1e-6, rtol=1e-3), errors


def test_disagreement_is_relative_to_the_step():
    spec = importlib.util.spec_from_file_location("bench_agreement",
                                                  ROOT / "benchmarks" / "agreement.py")
    agreement = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agreement)
    initial = np.random.default_rng(0).normal(size=(2, 5, 3))
    stepped = initial + 1e-3 * np.random.default_rng(1).normal(size=initial.shape)
    assert agreement.disagreement(stepped, stepped, initial) == {"max_error": 0.0,
                                                                  "rms_error": 0.0}
    errors = agreement.disagreement(stepped, agreement.perturbed(stepped, initial, 1e-6), initial)
    assert np.allclose(list(errors.values()), 1e-6, rtol=1e-6)
    assert not agreement.check(errors, "float64")["ok"]
    assert agreement.check(errors, "float32")["ok"]
    one_particle = stepped.copy()
    one_particle[1, 2, 0] += 2e-2 * np.abs(stepped - initial).max()
    assert not agreement.check(agreement.disagreement(stepped, one_particle, initial),
                               "float32")["ok"]
    not_finite = agreement.disagreement(stepped, np.full_like(stepped, np.nan), initial)
    assert not agreement.check(not_finite, "float32")["ok"]


def test_the_one_dimensional_scaling_run_checks_sorted_against_pairwise(tmp_path):
    """scaling_1d.py --quick: the sorted and the pairwise kernels make the same step at every
    size (1e-9 relative to the step), and the table, the JSON and the plot are written."""
    out = tmp_path / "scaling"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scaling_1d.py"), "--quick",
                           "--seconds", "0.02", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.with_suffix(".json").read_text())
    rows = [r for rows in result["series"].values() for r in rows]
    assert len(rows) == 6 and all(r["agreement"]["sorted vs pairwise"]["ok"] for r in rows)
    assert all(set(r["times_s"]) == {"sorted", "pairwise"} for r in rows)
    assert "## m = n" in done.stdout and out.with_suffix(".png").stat().st_size > 10_000
