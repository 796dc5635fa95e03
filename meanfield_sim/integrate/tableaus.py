"""Butcher tableaus of the explicit Runge-Kutta methods. Adding a method is adding a tableau.

An embedded pair carries ``b_err = b - b_hat``: the difference of the two solutions of orders
``order`` and ``order - 1`` (Dormand-Prince, Bogacki-Shampine: the higher order one is
propagated, "local extrapolation"). ``fsal``: the last stage is the derivative at the new point
and is reused as the first stage of the next step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tableau:
    name: str
    order: int
    c: tuple
    a: tuple          # lower-triangular rows: a[s] has s entries
    b: tuple
    b_err: tuple | None = None
    fsal: bool = False

    @property
    def stages(self) -> int:
        return len(self.b)

    @property
    def adaptive(self) -> bool:
        return self.b_err is not None


EULER = Tableau("euler", 1, (0.0,), ((),), (1.0,))
HEUN = Tableau("heun", 2, (0.0, 1.0), ((), (1.0,)), (0.5, 0.5))
RK4 = Tableau("rk4", 4, (0.0, 0.5, 0.5, 1.0), ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
              (1 / 6, 1 / 3, 1 / 3, 1 / 6))

_BS3_B = (2 / 9, 1 / 3, 4 / 9, 0.0)
_BS3_BHAT = (7 / 24, 1 / 4, 1 / 3, 1 / 8)
BS3 = Tableau("bs3", 3, (0.0, 0.5, 0.75, 1.0),
              ((), (0.5,), (0.0, 0.75), (2 / 9, 1 / 3, 4 / 9)),
              _BS3_B, tuple(np.subtract(_BS3_B, _BS3_BHAT)), fsal=True)

_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_BHAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
DOPRI5 = Tableau(
    "dopri5", 5, (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    ((),
     (1 / 5,),
     (3 / 40, 9 / 40),
     (44 / 45, -56 / 15, 32 / 9),
     (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
     (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
     (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)),
    _DP_B, tuple(np.subtract(_DP_B, _DP_BHAT)), fsal=True)

TABLEAUS = {t.name: t for t in (EULER, HEUN, RK4, BS3, DOPRI5)}
