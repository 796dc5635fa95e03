"""Test-session settings that must precede every import of Numba."""
import os

# the CUDA backend's tests run on Numba's CUDA simulator unless the environment says otherwise
# (NUMBA_ENABLE_CUDASIM=0 on a machine with a GPU runs them on the device)
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
