"""The smallest valid configs, as TOML text, for tests that vary one key at a time."""

# a network of 4 neurons on two explicit points in d = 1
NETWORK = """\
[run]
t_end = 1.0
[model]
width = 4
[data]
kind = "explicit"
x = [-1.0, 1.0]
labels = [-1, 1]
"""

# the final-layer toy model on labelled points without inputs (data.kind = "classes"); the
# [data] table is last, so that a test may append keys to it
FINAL_LAYER = """\
[run]
t_end = 1.0
[model]
kind = "final_layer"
loss = "softmax_ce"
[data]
kind = "classes"
"""
