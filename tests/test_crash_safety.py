"""Crash safety with real processes: SIGKILL, SIGTERM and SIGINT at random moments of an I/O-heavy
run, readers during the run, two runs on one output, a full disk and a failing disk.

Every run here is ``meanfield-sim run`` in a child process. What a stopped run left is compared,
bit for bit, with the same run left to finish (``crash_helpers.problems_against``).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import crash_helpers as ch  # noqa: E402
import io_helpers as io  # noqa: E402
from meanfield_sim.io.h5file import text_of

TRIALS = 20
RNG_SEED = 20261202  # the delays; the machine's timing adds its own randomness


@pytest.fixture(scope="module")
def heavy(tmp_path_factory):
    """The I/O-heavy config, its uninterrupted run (the reference) and how long its writing
    phase lasts (from OUT.part appearing to the end of the process), measured here."""
    folder = tmp_path_factory.mktemp("heavy")
    cfg = io.write_config(folder, ch.IO_HEAVY_TOML, "heavy.toml")
    out = folder / "reference.h5"
    proc = ch.start(cfg, out)
    appeared = ch.wait_for(ch.partial(out), proc)
    rc, err = ch.finish(proc)
    duration = time.monotonic() - appeared
    assert rc == 0, err
    reference = ch.read_all(out)
    assert ch.text(reference["attrs"]["status"]) == "complete"
    assert int(reference["attrs"]["n_records"]) == 1201
    return {"folder": folder, "cfg": cfg, "reference": reference, "duration": duration}


def _trials(heavy, name: str, signals: list[int]) -> list[dict]:
    """One child per signal, two at a time, each stopped at a random moment of its writing
    phase (5% to 60% of it, so that the signal lands before the run could finish even on a
    loaded machine); returns kill_trial's reports with the signal."""
    rng = random.Random(RNG_SEED + len(name))
    plan = [(heavy["folder"] / f"{name}{i}.h5", rng.uniform(0.05, 0.6) * heavy["duration"], sig)
            for i, sig in enumerate(signals)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda p: {**ch.kill_trial(heavy["cfg"], p[0], p[1], p[2]),
                                           "signal": p[2], "out": p[0]}, plan))
    return reports


def _cleanup(reports):
    for r in reports:
        for path in (r["out"], ch.partial(r["out"])):
            path.unlink(missing_ok=True)


def test_sigkill_at_random_moments_keeps_every_committed_record(heavy):
    reports = _trials(heavy, "killed", [signal.SIGKILL] * TRIALS)
    try:
        total = len(heavy["reference"]["series"]["observables/time"])
        summary = []
        for r in reports:
            assert r["rc"] == -signal.SIGKILL, r
            assert r["path"] == ch.partial(r["out"]), r  # never under the final name
            with h5py.File(r["path"], "r", locking=False) as f:
                status, n = f.attrs["status"], int(f.attrs["n_records"])
            summary.append((round(r["delay"], 3), n))
            assert status == b"running"  # fixed-length while the run goes: rewritten in place
            assert ch.problems_against(r["path"], heavy["reference"]) == [], (r["delay"], n)
        # the kills landed while records were being written, not before or after
        assert all(0 < n < total for _, n in summary), summary
    finally:
        _cleanup(reports)


def test_sigterm_and_sigint_at_random_moments_end_interrupted(heavy):
    signals = [signal.SIGTERM, signal.SIGINT] * (TRIALS // 2) + [signal.SIGHUP] * 2
    reports = _trials(heavy, "stopped", signals)
    try:
        for r in reports:
            name = signal.Signals(r["signal"]).name
            assert r["rc"] == 128 + r["signal"], r  # 143 SIGTERM, 130 SIGINT, 129 SIGHUP
            assert f"interrupted by {name}" in r["stderr"] and "marked 'interrupted'" in r[
                "stderr"], r["stderr"]
            assert "Traceback" not in r["stderr"] and "Exception ignored" not in r["stderr"]
            assert r["path"] == ch.partial(r["out"]) and not r["out"].exists()
            with h5py.File(r["path"], "r") as f:  # closed, resumable: fixed-length text stays
                assert text_of(f.attrs["status"]) == "interrupted"
                assert text_of(f.attrs["message"]) == f"interrupted by {name}"
                assert text_of(f.attrs["finished"]) != ""
                assert 0 < int(f.attrs["n_records"]) < 1201
            assert ch.problems_against(r["path"], heavy["reference"]) == []
    finally:
        _cleanup(reports)


def test_signal_before_the_file_exists_writes_nothing(heavy, tmp_path):
    """SIGTERM while the kernels compile (an empty Numba cache makes that last ~10 s): the run
    ends once they are ready, before creating a file: exit 143, nothing written."""
    out = tmp_path / "early.h5"
    proc = ch.start(heavy["cfg"], out, env={"NUMBA_CACHE_DIR": str(tmp_path / "cache")})
    time.sleep(2.0)
    assert not ch.partial(out).exists() and proc.poll() is None
    ch.send(proc, signal.SIGTERM)
    rc, err = ch.finish(proc, timeout=300)
    assert rc == 143, err
    assert "interrupted by SIGTERM; no output file was written" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_readers_never_fail_while_the_run_writes(heavy, tmp_path):
    """h5py (locking=False, as the README says) and ``info`` read the file over and over while
    the run writes it: every read succeeds and every committed frame is the reference's."""
    out = tmp_path / "live.h5"
    ref = heavy["reference"]["series"]
    proc = ch.start(heavy["cfg"], out)
    reads, infos, failures = 0, [], []
    try:
        ch.wait_for(ch.partial(out), proc)
        while proc.poll() is None:
            path = ch.partial(out)
            try:
                with h5py.File(path, "r", locking=False) as f:
                    n = int(f.attrs["n_records"])
                    risk = f["observables/risk"][:n]
                    w = f["particles/network/w"][:n]
            except FileNotFoundError:
                break  # renamed to the final name: the run is complete
            except Exception as exc:  # noqa: BLE001 - counted, then asserted to be none
                failures.append(repr(exc))
                continue
            reads += 1
            if not (np.array_equal(risk, ref["observables/risk"][:n])
                    and np.array_equal(w, ref["particles/network/w"][:n])):
                failures.append(f"committed frames differ at n = {n}")
            if reads % 40 == 1:
                info = subprocess.run(io.cli_command("info", str(out)), capture_output=True,
                                      text=True, env=io.subprocess_env(), timeout=60)
                infos.append(info)
        rc, err = ch.finish(proc)
    finally:
        io.stop(proc)
    assert rc == 0, err
    assert failures == []
    assert reads >= 20, reads
    live = [i for i in infos if "status:      running" in i.stdout]
    assert all(i.returncode == 0 for i in infos), [i.stderr for i in infos]
    assert live and all("the run is going (pid" in i.stdout for i in live), infos[0].stdout


HEARTBEAT_WRITER = """\
import sys
from meanfield_sim import cli, runner
runner.HEARTBEAT_SECONDS = 0.2
cli.main(sys.argv[1:])
"""


def test_heartbeat_reports_progress_between_records(tmp_path):
    """Records 10^7 steps apart: between them the file's steps and t_reached still advance
    (every HEARTBEAT_SECONDS, here 0.2 s), while n_records stays put."""
    cfg = io.write_config(tmp_path, io.ENDLESS_TOML.replace("count = 10000", "count = 10"),
                          "sparse.toml")
    out = tmp_path / "beat.h5"
    proc = subprocess.Popen([sys.executable, "-c", HEARTBEAT_WRITER, "run", str(cfg), "-o",
                             str(out), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=io.subprocess_env())
    seen = []
    try:
        ch.wait_for(ch.partial(out), proc)
        for _ in range(4):
            time.sleep(0.5)
            with h5py.File(ch.partial(out), "r", locking=False) as f:
                seen.append((int(f.attrs["n_records"]), int(f.attrs["steps"]),
                             float(f.attrs["t_reached"]), ch.text(f.attrs["updated"])))
        ch.send(proc, signal.SIGTERM)
        rc, err = ch.finish(proc)
    finally:
        io.stop(proc)
    assert rc == 143, err
    assert {n for n, *_ in seen} == {1}, seen  # only the t = 0 record
    steps = [s for _, s, _, _ in seen]
    assert all(b > a for a, b in zip(steps, steps[1:])), seen
    assert all(abs(t - s * 0.01) < 1e-6 * max(1, t) for _, s, t, _ in seen), seen


def test_info_tells_a_killed_run_from_a_live_one(heavy, tmp_path):
    out = tmp_path / "dead.h5"
    report = ch.kill_trial(heavy["cfg"], out, 0.3 * heavy["duration"])
    assert report["rc"] == -signal.SIGKILL
    info = subprocess.run(io.cli_command("info", str(out)), capture_output=True, text=True,
                          env=io.subprocess_env(), timeout=60)
    assert info.returncode == 0, info.stderr
    assert f"file:        {ch.partial(out)}" in info.stdout
    assert "status:      running (its process (pid" in info.stdout
    assert "is gone: killed or crashed" in info.stdout


# ---------------------------------------------------------------------------------------------
# Two runs, one output
# ---------------------------------------------------------------------------------------------
def test_a_second_run_on_a_busy_output_is_refused(heavy, tmp_path):
    """While one run writes OUT, a second on OUT (with or without --force) stops at once with a
    clear error and touches nothing; once the first is gone its leftover is taken over."""
    out = tmp_path / "shared.h5"
    endless = io.write_config(tmp_path, io.ENDLESS_TOML, "endless.toml")
    first = ch.start(endless, out)
    try:
        ch.wait_for(ch.partial(out), first)
        for extra in ((), ("--force",)):
            second = ch.start(heavy["cfg"], out, *extra)
            rc, err = ch.finish(second)
            assert rc == 1, err
            assert f"another run is writing {out}" in err and "written by pid" in err, err
            assert first.poll() is None
        ch.send(first, signal.SIGTERM)
        rc, err = ch.finish(first)
    finally:
        io.stop(first)
    assert rc == 143, err
    with h5py.File(ch.partial(out), "r") as f:
        # the first run's
        assert text_of(f.attrs["status"]) == "interrupted" and f.attrs["seed"] == 1
        n = int(f.attrs["n_records"])
        assert n >= 1 and np.isfinite(f["observables/risk"][:n]).all()
    tiny = io.write_config(tmp_path)
    third = ch.start(tiny, out)
    rc, err = ch.finish(third)
    assert rc == 0, err
    assert not ch.partial(out).exists()
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["seed"] == 5  # the tiny config


@pytest.mark.parametrize("attempt", range(3))
def test_two_runs_started_together_leave_one_complete_file(tmp_path, attempt):
    """Both pass the 'exists' check; exactly one wins, the other says why and leaves no file
    under the final name."""
    cfg = io.write_config(tmp_path)
    out = tmp_path / "race.h5"
    procs = [ch.start(cfg, out), ch.start(cfg, out)]
    results = [ch.finish(p) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 1], results
    loser = next(err for rc, err in results if rc == 1)
    assert ("another run is writing" in loser or "exists" in loser
            or "created by someone else" in loser), loser
    assert "Traceback" not in loser
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete" and int(f.attrs["n_records"]) == 5


def _committed(path) -> int:
    """n_records of a file being written (0 while it cannot be read yet)."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f.attrs["n_records"])
    except (OSError, KeyError):
        return 0


def test_force_keeps_the_old_result_until_the_new_one_is_complete(heavy, tmp_path):
    out = tmp_path / "result.h5"
    tiny = io.write_config(tmp_path)
    rc, err = ch.finish(ch.start(tiny, out))
    assert rc == 0, err
    before = out.read_bytes()
    proc = ch.start(heavy["cfg"], out, "--force")
    try:
        ch.wait_for(ch.partial(out), proc)
        while _committed(ch.partial(out)) < 50 and proc.poll() is None:  # of 1201 records
            time.sleep(0.01)
        assert proc.poll() is None, "the --force run ended before it could be stopped"
        assert out.read_bytes() == before  # the old result is untouched while the new one runs
        ch.send(proc, signal.SIGTERM)
        rc, err = ch.finish(proc)
    finally:
        io.stop(proc)
    assert rc == 143, err
    assert out.read_bytes() == before  # an interrupted --force run replaces nothing
    with h5py.File(ch.partial(out), "r") as f:
        assert text_of(f.attrs["status"]) == "interrupted"


# ---------------------------------------------------------------------------------------------
# Full and failing disks (a real tmpfs in a private mount namespace; a real file-size limit)
# ---------------------------------------------------------------------------------------------
def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k none /mnt"],
                           capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(
    not os.environ.get("CI") and not _can_mount(),
    reason="needs unshare and mount (root); CI runs it as root")


def _on_small_tmpfs(folder: Path, size: str, *command: str) -> subprocess.CompletedProcess:
    """Run ``command`` with ``folder`` replaced by a fresh tmpfs of ``size`` (private mount
    namespace: nothing is left mounted); ``{dir}`` in the command is the mount point."""
    script = (f"mount -t tmpfs -o size={size} none {folder} && " +
              " ".join(f"'{c}'" for c in command).replace("{dir}", str(folder)) +
              f"; rc=$?; ls -A {folder}; exit $rc")
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          env=io.subprocess_env(), timeout=300, stdin=subprocess.DEVNULL)


@needs_mount
def test_a_disk_too_small_is_refused_before_anything_is_written(heavy, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    shutil.copy(heavy["cfg"], tmp_path / "heavy.toml")
    result = _on_small_tmpfs(mount, "2m", *io.cli_command(
        "run", str(tmp_path / "heavy.toml"), "-o", "{dir}/out.h5", "-q"))
    assert result.returncode == 1, result
    assert "free; this run's file needs" in result.stderr and "no output file" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == ""  # `ls -A` of the tmpfs: nothing left behind


FILL_THE_DISK = """\
import shutil, sys
from meanfield_sim import cli
real = shutil.disk_usage

def disk_usage(path):  # another job fills the disk right after the free-space check
    found = real(path)
    with open(sys.argv[1], "wb") as filler:
        try:
            while True:
                filler.write(b"x" * 65536)
                filler.flush()
        except OSError:
            pass
    return found

shutil.disk_usage = disk_usage
cli.main(sys.argv[2:])
"""


@needs_mount
def test_a_disk_that_fills_up_during_creation_gives_a_clear_error(heavy, tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    shutil.copy(heavy["cfg"], tmp_path / "heavy.toml")
    script = tmp_path / "fill.py"
    script.write_text(FILL_THE_DISK)
    result = _on_small_tmpfs(mount, "64m", sys.executable, str(script), "{dir}/filler", "run",
                             str(tmp_path / "heavy.toml"), "-o", "{dir}/out.h5", "-q")
    assert result.returncode == 1, result
    assert "cannot create" in result.stderr and "No space left on device" in result.stderr, \
        result.stderr
    assert "no output file was written" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.split() == ["filler"]  # no partial file left behind


def test_a_write_error_during_the_run_marks_the_file_failed(heavy, tmp_path):
    """Lower the running process's file-size limit (prlimit) below the file's size: its next
    write past the limit fails with EFBIG, a real I/O error from the kernel, mid-run."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) not installed")
    out = tmp_path / "efbig.h5"
    proc = ch.start(heavy["cfg"], out)
    try:
        ch.wait_for(ch.partial(out), proc)
        time.sleep(0.2 * heavy["duration"])
        size = ch.partial(out).stat().st_size
        subprocess.run(["prlimit", f"--pid={proc.pid}", f"--fsize={size // 2}"], check=True)
        rc, err = ch.finish(proc)
    finally:
        io.stop(proc)
    assert rc == 1, err
    assert "writing" in err and "failed" in err and "File too large" in err, err
    assert "Traceback" not in err and "marked 'failed'" in err
    with h5py.File(ch.partial(out), "r", locking=False) as f:
        assert text_of(f.attrs["status"]) == "failed"
        assert "File too large" in text_of(f.attrs["message"])
    assert [p.split(":")[0] for p in ch.problems_against(ch.partial(out),
                                                         heavy["reference"])] in ([], ["tail"])
