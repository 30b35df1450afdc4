"""AOL: Almost-Orthogonal Lipschitz layers, and a harness that compares Lipschitz layers.

from aol import AOLConv2d, AOLLinear, MaxMin, export
layer = AOLConv2d(64, 64, 3)          # 1-Lipschitz for every weight
layer.lipschitz_bound()               # 1.0, guaranteed (Lemma 2)
fast = export(model)                  # plain Conv2d/Linear with the rescaling folded in

This package is the layer library and imports only torch (and numpy). The experiment
engine (data, training, certification runs, measurement, the CLI) is ``aol.engine``.
``aol.testing.check_family(family)`` runs the conformance checks every layer family must
pass (import it explicitly; ``import aol`` does not load it).
"""

from aol import families
from aol.export import export
from aol.lipschitz import network_lipschitz_bound
from aol.nn.contract import LipschitzConv2d, LipschitzLayer, LipschitzLinear
from aol.nn.layers import AOLConv2d, AOLLinear
from aol.nn.modules import ConcatenationPooling, FirstChannels, MaxMin

__all__ = [
    "AOLConv2d",
    "AOLLinear",
    "ConcatenationPooling",
    "FirstChannels",
    "LipschitzConv2d",
    "LipschitzLayer",
    "LipschitzLinear",
    "MaxMin",
    "export",
    "families",
    "network_lipschitz_bound",
]
__version__ = "0.1.0"
