"""AOL: Almost-Orthogonal Lipschitz layers and the harness around them.

from aol import AOLConv2d, AOLLinear, MaxMin, export
layer = AOLConv2d(64, 64, 3)          # 1-Lipschitz for every weight
layer.lipschitz_bound()               # 1.0, guaranteed (Lemma 2)
fast = export(model)                  # plain Conv2d/Linear with the rescaling baked in
"""

from aol import families
from aol.export import export
from aol.layers import AOLConv2d, AOLLinear
from aol.lipschitz import network_lipschitz_bound
from aol.modules import ConcatenationPooling, FirstChannels, MaxMin

__all__ = [
    "AOLConv2d",
    "AOLLinear",
    "ConcatenationPooling",
    "FirstChannels",
    "MaxMin",
    "export",
    "families",
    "network_lipschitz_bound",
]
__version__ = "0.1.0"
