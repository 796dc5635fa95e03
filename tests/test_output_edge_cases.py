"""Output paths that a review found mishandled: each now ends with a true message."""
from __future__ import annotations

import os
import sys

import h5py
import pytest
from click.testing import CliRunner

import meanfield_sim as mf
from meanfield_sim import config as config_mod
from meanfield_sim import runner
from meanfield_sim.cli import main
from meanfield_sim.io.publish import OutputError, OutputExists

sys.path.insert(0, os.path.dirname(__file__))
import io_helpers as io  # noqa: E402
from meanfield_sim.io.h5file import text_of


@pytest.fixture
def cfg():
    return config_mod.loads(io.TINY_TOML)


def test_a_failed_rename_keeps_a_complete_partial_file_and_says_so(tmp_path, cfg):
    """OUT is a folder, so renaming the finished file onto it fails: the message says the
    result is complete under OUT.part, and a later run does not silently replace it."""
    out = tmp_path / "dd.h5"
    out.mkdir()
    with pytest.raises(OutputError) as caught:
        runner.run(cfg, out, force=True)
    assert "renaming it to dd.h5 failed" in str(caught.value)
    assert runner.what_was_left(caught.value).endswith("marked 'complete'")
    with h5py.File(str(out) + ".part", "r") as f:
        assert f.attrs["status"] == "complete"
    os.rmdir(out)
    with pytest.raises(OutputExists, match="holds a complete result"):
        runner.run(cfg, out)
    assert runner.run(cfg, out, force=True).status == "complete"  # --force replaces it


def test_a_claim_that_fails_leaves_nothing_locked_or_behind(tmp_path, cfg):
    out = tmp_path / "d.h5"
    (tmp_path / "d.h5.part").mkdir()  # cannot be taken over
    with pytest.raises(OutputError):
        runner.run(cfg, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5.part"]
    os.rmdir(tmp_path / "d.h5.part")
    assert runner.run(cfg, out).status == "complete"  # no stale lock in this process


def test_hdf5_file_locking_forced_on_is_a_clear_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HDF5_USE_FILE_LOCKING", "TRUE")
    result = CliRunner().invoke(main, ["run", str(io.write_config(tmp_path)), "-o",
                                       str(tmp_path / "x.h5")])
    assert result.exit_code == 2 and "HDF5_USE_FILE_LOCKING=TRUE" in result.output
    assert not any(p.suffix in (".h5", ".part", ".new") for p in tmp_path.iterdir())


def test_an_oserror_outside_the_file_is_not_called_a_write_failure(tmp_path, cfg):
    def progress(t, t_end, risk):
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        runner.run(cfg, tmp_path / "bp.h5", progress=progress)
    with h5py.File(tmp_path / "bp.h5.part", "r") as f:
        assert text_of(f.attrs["status"]) == "failed"
        assert text_of(f.attrs["message"]).startswith("BrokenPipeError") and "writing" not in \
            text_of(f.attrs["message"])


def test_plot_of_a_file_with_one_record_is_a_clear_error(tmp_path, cfg):
    def progress(t, t_end, risk):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg, tmp_path / "p1.h5", progress=progress)
    result = CliRunner().invoke(main, ["plot", str(tmp_path / "p1.h5"), "-o",
                                       str(tmp_path / "figs")])
    assert result.exit_code == 1 and "at least two" in result.output
    assert "Traceback" not in result.output


def test_a_dangling_link_at_the_output_is_refused_before_the_run(tmp_path):
    link = tmp_path / "sl.h5"
    link.symlink_to(tmp_path / "nowhere" / "x.h5")
    result = CliRunner().invoke(main, ["run", str(io.write_config(tmp_path)), "-o", str(link)])
    assert result.exit_code == 2 and "exists" in result.output


def test_simulate_without_out_does_not_point_at_its_deleted_file(tmp_path):
    with pytest.raises(Exception) as caught:
        mf.simulate(io.write_config(tmp_path), integrator={"max_steps": 2})
    assert runner.what_was_left(caught.value) == "no output file was written"
