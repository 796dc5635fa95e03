"""The names the config accepts are exactly the ones the model and integrators implement."""
from meanfield_sim import config
from meanfield_sim.integrate import OPTIMIZERS
from meanfield_sim.integrate.tableaus import TABLEAUS
from meanfield_sim.kernels import BACKENDS
from meanfield_sim.model.activations import ACTIVATION_IDS
from meanfield_sim.model.losses import LOSS_IDS


def test_activation_names_match_the_model():
    assert set(config.ACTIVATIONS) == set(ACTIVATION_IDS)


def test_loss_names_match_the_model():
    assert set(config.LOSSES) == set(LOSS_IDS)
    assert set(config.BINARY_LOSSES) < set(LOSS_IDS)


def test_integrator_names_match_the_tableaus_and_optimisers():
    assert set(config.METHODS) == set(TABLEAUS) | set(OPTIMIZERS)


def test_adaptive_method_names_match_the_embedded_pairs():
    from meanfield_sim.config.schema import ADAPTIVE_METHODS
    assert set(ADAPTIVE_METHODS) == {name for name, t in TABLEAUS.items() if t.adaptive}


def test_model_kinds_match_the_flows():
    from meanfield_sim.flows import FLOW_KINDS
    assert set(config.MODEL_KINDS) == set(FLOW_KINDS)


def test_backend_names_match_the_kernels():
    assert set(config.SCHEMA["run"]["backend"].choices) == set(BACKENDS)


def test_kernel_disk_cache_tracks_the_model_sources():
    """Numba's cache would only notice edits of kernels/cpu.py; ours is stamped with a digest of
    the activation and loss sources too, so changing them recompiles instead of loading stale
    code."""
    from numba.core.registry import CPUDispatcher

    from meanfield_sim.kernels import blocked, cpu

    digest = cpu.kernel_source_digest()
    for module in (cpu, blocked):
        # every kernel compiled on its own (not inlined into another) is listed and stamped
        compiled = {name for name, f in vars(module).items() if isinstance(f, CPUDispatcher)
                    and f.__module__ == module.__name__
                    and f.targetoptions.get("inline", "never") == "never"}
        assert compiled == {f.__name__ for f in module.JIT_KERNELS}
        for kernel in module.JIT_KERNELS:
            assert kernel._cache._cache_file._source_stamp == digest


def test_analysis_reads_files_without_numba():
    """The analysis package sits below the simulator: importing it must not pull in Numba."""
    import subprocess
    import sys

    code = ("import meanfield_sim, meanfield_sim.analysis, meanfield_sim.analysis.dataset, sys; "
            "sys.exit('numba' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd="/").returncode == 0


def test_setup_cfg_lists_every_package():
    """setup.cfg lists packages by hand (analysis/ is mapped to meanfield_sim.analysis): a new
    subpackage missing from the list would be left out of a non-editable install."""
    import configparser
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    parser = configparser.ConfigParser()
    parser.read(root / "setup.cfg")
    listed = set(parser["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(root).parts)
             for p in (root / "meanfield_sim").rglob("__init__.py")}
    assert listed == found | {"meanfield_sim.analysis"}
    assert not (root / "analysis" / "__init__.py").exists() or \
        "meanfield_sim.analysis = analysis" in parser["options"]["package_dir"]


def test_three_neuron_limit_is_zero_exactly_when_p3_is_twice_p1():
    """Lemma 18: h(t, 1) - h(t, -1) -> 0 iff p3 = 2 p1; the limit is log(p3 / (2 p1))."""
    import math

    from meanfield_sim.theory import three_neuron_limit
    assert three_neuron_limit(0.25, 0.5) == 0.0
    assert math.isclose(three_neuron_limit(0.3, 0.4), math.log(0.4 / 0.6))
