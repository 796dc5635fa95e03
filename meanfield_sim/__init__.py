"""meanfield-sim: gradient-flow dynamics of mean-field two-layer networks and of the softmax
cross-entropy toy models of E & Wojtowytsch, integrated with Numba kernels, written to HDF5."""
__version__ = "0.1.0"
