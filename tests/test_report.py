"""meanfield-sim report --quick on the shipped runs/paper: every claim within tolerance, every
figure written, runs reused on a second call."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from meanfield_sim.cli import main
from meanfield_sim.report import CLAIMS, make_report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    messages = []
    path, rows = make_report(ROOT / "runs" / "paper", out, quick=True, log=messages.append)
    return out, path, rows, messages


def test_every_claim_is_within_tolerance(quick_report):
    _, _, rows, _ = quick_report
    failed = [(r.source, r.quantity, r.error, r.tolerance) for r in rows if not r.passed]
    assert failed == []
    sources = {r.source for r in rows}
    assert {"Lemma 2", "Lemma 4, (4)", "Remark 5", "Corollary 9", "Lemma 16, (7)",
            "Lemma 18", "Section 5.2", "mean-field limit"} <= sources


def test_report_links_figures_that_exist(quick_report):
    out, path, rows, _ = quick_report
    text = path.read_text()
    assert text.startswith("# The paper's claims, measured")
    assert f"{len(rows)} of {len(rows)} rows within tolerance" in text
    links = [line[line.index("(") + 1:-1] for line in text.splitlines() if line.startswith("![")]
    assert len(links) >= 3 * len(CLAIMS)
    assert all((out / link).stat().st_size > 10_000 for link in links)
    assert "figures/section5_2_gap.png" in links  # Lemma 18 across the three weightings
    for line in text.splitlines():
        if line.startswith("| Corollary 9"):
            assert line.count(" | ") == 7  # the table survives "|" inside cells


def test_second_call_reuses_the_runs(quick_report):
    out, _, _, _ = quick_report
    result = CliRunner().invoke(main, ["report", str(ROOT / "runs" / "paper"), "-o", str(out),
                                       "--quick"])
    assert result.exit_code == 0, result.output
    assert result.output.count(": reused,") == len(CLAIMS)
    assert "claims within tolerance" in result.output
