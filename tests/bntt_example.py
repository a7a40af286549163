"""The hand-worked CubaBNTT example shared by the Lava process tests
(``tests/backends/test_lava_neurons.py``) and the BNTT schedule tests
(``tests/passes/test_bntt_schedule.py``), and the numpy reference run they both use.

Two neurons (channels), schedule of T = 3 rows, gain_exp 1, bias_exp 6, vth 10 (→ 640),
current_decay 4096 (u = a' * 64), voltage_decay 2048 (v halves, toward zero), soft reset.

ch 0: a' = rtz(a*g, 1) = 10, 3, rtz(-15, 1) = -7 (not -8), 3, 0, 7
  v: 640 (not > 640), 320+192+64 = 576, 288-448-64 = -224, -112+192 = 80, 40+64 = 104,
     52+448-64 = 436
ch 1: a' = 12, -3, 0, 12, -3, 0
  v: 768+320 = 1088 > 640 → 448; 224-192 = 32; 16+128 = 144; 72+768+320 = 1160 → 520;
     260-192 = 68; 34+128 = 162
"""

from __future__ import annotations

import numpy as np

from neurodeploy.backends import lava_neurons as ln

GAIN = [[2, 4], [1, -1], [3, 0]]
BIAS = [[0, 5], [1, 0], [-1, 2]]
A = np.array([[10, 7, -5, 3, 0, 5], [6, 6, 6, 6, 6, 6]])
WANT_U = [[640, 192, -448, 192, 0, 448], [768, -192, 0, 768, -192, 0]]
WANT_V = [[640, 576, -224, 80, 104, 436], [448, 32, 144, 520, 68, 162]]
WANT_S = [[0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0]]
#: the neuron parameters of the example (without shape, gain and bias)
PARAMS = dict(threshold=10, current_decay=4096, voltage_decay=2048, reset="subtract",
              gain_exp=1, bias_exp=6)


def reference(params: ln.BNTTNeuronParams, a: np.ndarray) -> dict[str, np.ndarray]:
    """u, v, s of the numpy reference ``bntt_neuron_step`` for inputs ``a``
    ``(*batch, *shape, steps)``, each ``(*batch, *shape, steps)``."""
    state = ln.bntt_init_state(params, a.shape[: a.ndim - 1 - len(params.shape)])
    out: dict[str, list] = {"u": [], "v": [], "s": []}
    for t in range(a.shape[-1]):
        s = ln.bntt_neuron_step(state, a[..., t], t, params)
        out["u"].append(state["u"])
        out["v"].append(state["v"])
        out["s"].append(s.astype(np.int64))
    return {k: np.stack(v, axis=-1) for k, v in out.items()}
