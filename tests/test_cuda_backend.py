"""The CUDA backend (run.backend = "cuda") against the CPU backend.

These tests run under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set by conftest.py unless
the environment sets it): on a machine with a GPU, ``NUMBA_ENABLE_CUDASIM=0 pytest
tests/test_cuda_backend.py`` runs them on the device. The simulator executes the kernels'
Python source thread by thread (4 threads per block, a flush every 3 terms: see
kernels.cuda), so the problems are tiny but cross every stride, flush and chunk boundary.

Tolerances. The CPU kernels are checked against finite differences (test_gradients); here the
CUDA passes must equal them up to summation order: float64 to 1e-13 relative to the largest
entry (n, m < 20 terms of size O(1), each order-dependent rounding ~1e-16); float32 to 2e-6
(float32's unit roundoff 6e-8 times ~20 terms, with headroom). The PTX test compiles the float32
pair kernels with the real NVVM (pip's nvidia-nvvm) for compute capability 9.0.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import physics_helpers as ph  # noqa: E402

from meanfield_sim import config as config_mod  # noqa: E402
from meanfield_sim import runner  # noqa: E402
from meanfield_sim.analysis.dataset import open_run  # noqa: E402
from meanfield_sim.kernels import cpu  # noqa: E402

if os.environ.get("MEANFIELD_CUDA") != "1":  # CI sets it: a missing numba-cuda fails there
    pytest.importorskip("numba_cuda", reason="the 'cuda' extra (numba-cuda) is not installed")
from numba import cuda  # noqa: E402
from meanfield_sim.kernels import cuda as cuda_kernels  # noqa: E402

TOL = {"float64": 1e-13, "float32": 2e-6}


def _serialise_simulated_shared_arrays():
    """numba-cuda's simulator (0.30) gives a block's threads one shared array per source line
    by an unlocked check-then-set (FakeCUDAShared.array): two threads arriving at once can
    each get an array of their own, and a block reduction then sums the wrong buffer (seen
    here about once in 100 kernel launches). Taking a lock around it restores the shared
    semantics; kernels on a real GPU are not affected."""
    import threading
    import traceback

    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        assert shape != 0 and alignment is None  # the kernels use neither
        caller = traceback.extract_stack(sys._getframe(1), limit=1)[0][0:2]  # as the original
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                if not isinstance(dtype, np.dtype):
                    dtype = numpy_support.as_dtype(dtype)
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    kernelapi.FakeCUDAShared.array = array


if cuda_kernels.SIMULATOR:
    _serialise_simulated_shared_arrays()


@pytest.fixture(autouse=True)
def fast_simulator_threads():
    """The simulator runs a block's threads as Python threads and polls them: a short switch
    interval makes the GIL change hands between polls (about 10x faster here)."""
    before = sys.getswitchinterval()
    if cuda_kernels.SIMULATOR:
        sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def _flows(activation, loss, dtype, d=2, n=7, m=9, R=2, train=("a", "w", "b")):
    cfg = ph.small_config(activation, loss, "mean_field", train, m=m, n=n, d=d, R=R,
                          extra={"run": {"dtype": dtype}, "model": {"leaky_slope": 0.1}})
    flow_cpu, theta = ph.build_flow(cfg)
    cfg["run"]["backend"] = "cuda"
    flow_gpu, _ = ph.build_flow(cfg)
    theta = ph.smooth_particles(theta.shape, flow_cpu.x.astype(np.float64), flow_cpu.outputs,
                                activation, seed=3, need_inside_unit=activation == "flat_sigmoid")
    return flow_cpu, flow_gpu, theta


def _close(a, b, dtype, what):
    scale = max(np.abs(a).max(), 1e-300)
    err = np.abs(a - b).max() / scale
    assert err <= TOL[dtype], f"{what}: CUDA differs from CPU by {err:.3g} (relative)"


@pytest.mark.parametrize("dtype", ("float64", "float32"))
@pytest.mark.parametrize("loss", ("logistic", "exponential", "softmax_ce"))
@pytest.mark.parametrize("activation", ph.ACTIVATIONS)
def test_velocity_and_evaluation_equal_the_cpu_backend(activation, loss, dtype):
    flow_cpu, flow_gpu, theta = _flows(activation, loss, dtype)
    v_cpu = ph.velocity_of(flow_cpu, theta)
    out = cuda.device_array(theta.shape)
    flow_gpu.velocity(cuda.to_device(theta), out)
    v_gpu = out.copy_to_host()
    assert np.abs(v_cpu).max() > 1e-3  # not vacuous
    _close(v_cpu, v_gpu, dtype, "velocity")
    e_cpu, e_gpu = flow_cpu.evaluate(theta), flow_gpu.evaluate(theta)
    _close(e_cpu.outputs, e_gpu.outputs, dtype, "outputs")
    _close(e_cpu.risk, e_gpu.risk, dtype, "risk")
    _close(e_cpu.log_risk, e_gpu.log_risk, dtype, "log risk")
    grid = np.linspace(-2, 2, 5)[:, None].repeat(theta.shape[2] - flow_cpu.outputs - 1, axis=1)
    _close(flow_cpu.outputs_at(theta, grid), flow_gpu.outputs_at(theta, grid), dtype, "grid")


@pytest.mark.parametrize("train", (("a",), ("w", "b"), ("a", "b")), ids="".join)
def test_frozen_groups_have_velocity_exactly_zero(train):
    flow_cpu, flow_gpu, theta = _flows("tanh", "logistic", "float64", train=train)
    out = cuda.device_array(theta.shape)
    flow_gpu.velocity(cuda.to_device(theta), out)
    v_gpu, v_cpu = out.copy_to_host(), ph.velocity_of(flow_cpu, theta)
    frozen = ~flow_gpu.train_mask
    assert np.all(v_gpu[..., frozen] == 0.0)
    _close(v_cpu, v_gpu, "float64", "velocity")


@pytest.mark.parametrize("d, k, n", ((16, 1, 5), (1, 18, 5)), ids=("p>ROWS", "k>ROWS"))
def test_kernels_chunk_more_rows_than_a_thread_holds(d, k, n):
    """p = k + d + 1 > ROWS runs velocity_sums in row chunks, k > ROWS runs forward in output
    chunks; both against the CPU kernels on random arrays."""
    rng = np.random.default_rng(0)
    R, m, p = 2, 7, k + d + 1
    assert p > cuda_kernels.ROWS
    theta = rng.normal(size=(R, m, p))
    x = rng.normal(size=(n, d))
    forward, velocity_sums, layout = cuda_kernels.pair_kernels(np.float64)
    thetaT = cuda.device_array((R, p, m))
    layout[cuda_kernels.thread_grid(R * m), cuda_kernels.THREADS](cuda.to_device(theta), thetaT)
    assert np.array_equal(thetaT.copy_to_host(), theta.transpose(0, 2, 1))
    h_gpu = cuda.device_array((R, n, k))
    forward[cuda_kernels.block_grid(R * n), cuda_kernels.THREADS](
        thetaT, cuda.to_device(x), k, 3, np.float64(0.0), np.float64(0.5), h_gpu)
    h_cpu = np.empty((R, n, k))
    cpu.forward(np.ascontiguousarray(theta.transpose(0, 2, 1)), x, k, 3, 0.0, 0.5, h_cpu)
    _close(h_cpu, h_gpu.copy_to_host(), "float64", "forward")
    dualT = rng.uniform(-1, 1, size=(R, k, n))
    sums = cuda.device_array((R, p, m))
    velocity_sums[cuda_kernels.thread_grid(R * m), cuda_kernels.THREADS](
        thetaT, cuda.to_device(np.ascontiguousarray(x.T)), cuda.to_device(dualT), k, 3,
        np.float64(0.0), sums)
    v_cpu = np.empty((R, m, p))
    cpu.velocity(np.ascontiguousarray(theta.transpose(0, 2, 1)), np.ascontiguousarray(x.T), dualT,
                 np.zeros(R), k, 3, 0.0, True, True, True, v_cpu)
    _close(-v_cpu.transpose(0, 2, 1), sums.copy_to_host(), "float64", "velocity sums")


def _network_config(**run):
    """A smooth activation: with ReLU's kinks dopri5 rejects many steps (311 steps and 4649
    evaluations to t = 2 against tanh's 12 and 73), too many for the simulator."""
    cfg = config_mod.loads(textwrap.dedent("""\
        [run]
        t_end = 2.0
        replicas = 2
        [model]
        width = 6
        activation = "tanh"
        [data]
        kind = "explicit"
        x = [-1.0, -0.3, 0.4, 1.0, 0.7]
        labels = [-1, -1, 1, 1, 1]
        [integrator]
        method = "dopri5"
        [record]
        schedule = "linear"
        count = 3
        particles = "all"
        """))
    cfg["run"].update(run)
    return cfg


@pytest.mark.parametrize("method", ("dopri5", "rk4"))
def test_a_whole_run_on_the_device_follows_the_cpu_run(tmp_path, method):
    """Same steps (the adaptive controller sees the same error norms to rounding), same
    trajectory: risk, margins and the recorded particles within 1e-10."""
    files = {}
    for backend in ("cpu", "cuda"):
        cfg = _network_config(backend=backend)
        cfg["integrator"]["method"] = method
        cfg["integrator"]["dt"] = 0.1
        files[backend] = tmp_path / f"{backend}.h5"
        runner.run(cfg, files[backend])
    ds_cpu, ds_gpu = open_run(files["cpu"]), open_run(files["cuda"])
    assert ds_gpu.attrs["status"] == "complete"
    assert ds_gpu.attrs["steps"] == ds_cpu.attrs["steps"] > 5
    assert ds_gpu.attrs["grad_evals"] == ds_cpu.attrs["grad_evals"]
    for name in ("risk", "margin", "a", "w", "b"):
        np.testing.assert_allclose(ds_gpu[name].values, ds_cpu[name].values, rtol=1e-10,
                                   atol=1e-12, err_msg=name)


def test_an_interrupted_device_run_resumes_to_the_uninterrupted_one(tmp_path):
    """A checkpoint at every step, a stop after the second record, --resume: the resumed file
    has the records of the run that was never stopped (the checkpoint copies the device state
    and FSAL stage to the host and back)."""
    whole, stopped = tmp_path / "whole.h5", tmp_path / "stopped.h5"
    runner.run(_network_config(backend="cuda"), whole)

    def stop_after_two(t, t_end, risk):
        if t > 0.5:
            raise KeyboardInterrupt

    cfg = _network_config(backend="cuda", checkpoint_seconds=1e-6)
    with pytest.raises(KeyboardInterrupt):
        runner.run(cfg, stopped, progress=stop_after_two)
    assert (tmp_path / "stopped.h5.ckpt").exists()
    runner.run(cfg, stopped, resume=True)
    a, b = open_run(whole), open_run(stopped)
    assert b.attrs["status"] == "complete" and b.attrs["steps"] == a.attrs["steps"]
    for name in ("risk", "margin", "a", "w", "b"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


NETWORK_ON_CUDA = {"run": {"t_end": 1.0, "backend": "cuda"}, "model": {"width": 4},
                   "data": {"kind": "explicit", "x": [-1.0, 1.0], "labels": [-1, 1]}}
TOY_ON_CUDA = {"run": {"t_end": 1.0, "backend": "cuda"},
               "model": {"kind": "final_layer", "loss": "softmax_ce"}, "data": {"kind": "classes"}}


@pytest.mark.parametrize("raw, fragment", (
    (ph.deep_merge(NETWORK_ON_CUDA, {"integrator": {"method": "adam"}}),
     "integrator.method = 'adam' runs on the CPU only"),
    (TOY_ON_CUDA, "model.kind = 'final_layer' runs on the CPU only"),
))
def test_the_config_refuses_what_the_device_does_not_run(raw, fragment):
    with pytest.raises(config_mod.ConfigError, match=fragment):
        config_mod.resolve(ph.deep_merge(raw, {}))


def _run_outside_the_simulator(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=600)


def test_without_a_gpu_the_error_says_what_to_do():
    done = _run_outside_the_simulator("""
        from numba import cuda
        if cuda.is_available():
            print("GPU PRESENT")
        else:
            from meanfield_sim import kernels
            try:
                kernels.get_backend("cuda")
            except kernels.BackendUnavailable as exc:
                print(exc)
        """)
    assert done.returncode == 0, done.stderr
    if "GPU PRESENT" not in done.stdout:
        assert "no CUDA GPU" in done.stdout and "NUMBA_ENABLE_CUDASIM=1" in done.stdout


def test_float32_pair_kernels_have_no_float64_instruction():
    """Compile forward and velocity_sums to PTX with NVVM (no GPU needed: the device query
    that nested device functions make is answered with compute capability 9.0) and read it:
    float32 has no .f64 instruction, float64 has them (so the check can fail)."""
    done = _run_outside_the_simulator("""
        import types
        import numba.cuda.dispatcher as dispatcher
        dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
        from numba import cuda
        from meanfield_sim.kernels import cuda as K
        for name in ("float32", "float64"):
            forward, velocity_sums, layout = K.pair_kernels(name)
            a3, a2 = f"{name}[:, :, ::1]", f"{name}[:, ::1]"
            sigs = {"forward": (forward, f"void({a3}, {a2}, int64, int64, {name}, {name}, {a3})"),
                    "velocity": (velocity_sums,
                                 f"void({a3}, {a2}, {a3}, int64, int64, {name}, {a3})")}
            for kernel, (fn, sig) in sigs.items():
                ptx, _ = cuda.compile_ptx(fn.py_func, sig, cc=(9, 0))
                lines = [l.strip() for l in ptx.splitlines() if ".f64" in l]
                print(name, kernel, len(lines), lines[:3])
        """)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = {tuple(line.split()[:2]): int(line.split()[2]) for line in done.stdout.splitlines()}
    assert counts[("float32", "forward")] == 0 and counts[("float32", "velocity")] == 0, done.stdout
    assert counts[("float64", "forward")] > 0 and counts[("float64", "velocity")] > 0, done.stdout
