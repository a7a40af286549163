"""neurodeploy's intermediate representation: typed immutable nodes and the graph."""

from .graph import Graph
from .nodes import (
    BNTT,
    IF,
    LIF,
    UPDATE_ORDERS,
    BatchNorm,
    I,
    ReLU,
    MAX_ELEMENTS,
    NODE_TYPES,
    Add,
    Affine,
    Average,
    AvgPool2d,
    Concat,
    Conv2d,
    CubaLIF,
    Flatten,
    Input,
    Linear,
    Node,
    QConv2d,
    QCubaBNTT,
    QCubaLIF,
    QDense,
    QResonateFire,
    QSigmaDelta,
    QSumPool2d,
    SumPool2d,
)

__all__ = [
    "Graph", "Node", "NODE_TYPES", "MAX_ELEMENTS", "Input", "Flatten", "Add", "Concat", "Average",
    "Affine", "Linear", "Conv2d", "SumPool2d", "AvgPool2d", "LIF", "CubaLIF", "IF", "I", "ReLU", "BatchNorm", "BNTT", "UPDATE_ORDERS",
    "QDense", "QConv2d", "QSumPool2d", "QCubaLIF", "QCubaBNTT", "QSigmaDelta", "QResonateFire",
]
