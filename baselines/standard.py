"""``standard``: plain unconstrained ``torch.nn`` layers, the cost reference for every timing.

Not Lipschitz-constrained: its layers state no bound, so models built from it
get no certificate. It uses the default activation of every family, MaxMin (as AOL), so that the
architectures, and therefore the timings, differ only in the layers.
"""

from __future__ import annotations

from torch import nn

from aol.families import LayerFamily


def standard_conv(
    in_channels: int, out_channels: int, kernel_size, padding_mode: str = "zeros", **options
) -> nn.Conv2d:
    """A stride-1 ``nn.Conv2d`` whose output keeps the input's spatial size."""
    return nn.Conv2d(
        in_channels, out_channels, kernel_size, padding="same", padding_mode=padding_mode, **options
    )


STANDARD = LayerFamily(
    name="standard",
    conv_factory=standard_conv,
    linear_factory=nn.Linear,
    padding_modes=("zeros", "circular"),
    lipschitz=False,
    description="unconstrained nn.Conv2d / nn.Linear (no bound; timing reference)",
)
