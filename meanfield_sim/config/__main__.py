"""``python -m meanfield_sim.config`` prints the config reference (docs/config.md)."""
from . import reference_markdown

print(reference_markdown(), end="")
