"""Loihi-style fixed-point simulator, installed as ``neurodeploy.hw_sim``.

:func:`run` simulates a fixed-point IR graph bit-exactly as Lava's ``fixed_pt`` process models
(and, through them, Loihi 2 hardware) would, vectorized over the batch with torch on CPU or CUDA.
"""

from .engine import Engine, StepObserver, lava_weights, run

__all__ = ["Engine", "StepObserver", "run", "lava_weights"]
