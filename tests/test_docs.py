"""The documentation that is generated or quoted stays true to the code."""
from pathlib import Path

import pytest

from meanfield_sim import config

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_current():
    """docs/config.md is what `python -m meanfield_sim.config` prints today."""
    committed = (ROOT / "docs" / "config.md").read_text()
    assert committed == config.reference_markdown(), (
        "docs/config.md is stale: run `python -m meanfield_sim.config > docs/config.md`")


@pytest.mark.parametrize("path", sorted((ROOT / "runs").glob("**/*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    """A plain config resolves; a sweep config expands and every task resolves."""
    import tomllib

    from meanfield_sim.config import sweep

    raw = tomllib.loads(path.read_text())
    if "sweep" in raw:
        tasks = sweep.expand(*sweep.split_sweep(raw))
        assert tasks and all(t.cfg["run"]["t_end"] > 0 for t in tasks)
    else:
        assert config.load(path)["run"]["t_end"] > 0


def test_readme_names_only_existing_configs():
    text = (ROOT / "README.md").read_text()
    for word in text.split():
        word = word.strip("`|(),")
        if word.startswith("runs/") and word.endswith(".toml"):
            assert list(ROOT.glob(word)), word
