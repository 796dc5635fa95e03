"""meanfield-sim: gradient-flow dynamics of mean-field two-layer networks and of the softmax
cross-entropy toy models of E & Wojtowytsch, integrated with Numba kernels, written to HDF5."""
__version__ = "0.1.0"


def __getattr__(name):
    """``simulate`` and ``open_run`` on first use: importing the package stays cheap and free of
    Numba (``analysis`` imports it too)."""
    if name == "simulate":
        from .api import simulate
        return simulate
    if name == "open_run":
        from .analysis.dataset import open_run
        return open_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", "open_run", "simulate"]
