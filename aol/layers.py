"""AOL dense and convolutional layers (Prach & Lampert, ECCV 2022).

Both layers hold an unconstrained parameter ``weight`` (the paper's ``P``) and
use ``P diag(d)`` in every forward pass, with ``d`` recomputed from ``P``
(``aol.rescaling``), so gradients flow through the rescaling. ``export()`` bakes
the rescaled weight into a plain ``torch.nn.Linear`` / ``torch.nn.Conv2d``.

Every constrained layer of this project offers the same two methods:

* ``lipschitz_bound()``: a guaranteed upper bound on its l2 Lipschitz constant
  at the current weights (1.0 here, by Theorem 1 / Lemma 2);
* ``export()``: an inference module computing the same function without the
  weight transform.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aol.init import check_init_scheme, initialise_kernel, initialise_matrix
from aol.rescaling import conv_rescaling_factors, linear_rescaling_factors

PADDING_MODES = ("zeros", "circular")

_DOWNSAMPLE_HINT = (
    "downsample with aol.ConcatenationPooling(factor) followed by a 1x1 convolution of the "
    "same family, as the AOL paper does"
)


def pair(value) -> tuple[int, int]:
    """``k`` or ``(k1, k2)`` as a pair of ints (kernel sizes, strides, dilations)."""
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def check_linear_sizes(layer: str, in_features: int, out_features: int) -> None:
    """Raise ``ValueError`` unless both sizes are positive (shared by every family)."""
    if in_features < 1 or out_features < 1:
        raise ValueError(f"{layer} needs positive sizes, got in={in_features}, out={out_features}")


def check_conv_arguments(
    layer: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] = 1,
    padding: str = "same",
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    padding_modes: tuple[str, ...] = PADDING_MODES,
    odd_kernel: bool = True,
) -> tuple[int, int]:
    """Check the arguments of a stride-1, 'same'-size convolution; return the kernel pair.

    Every constrained convolution of this project (AOL and the baselines) has this
    shape: its bound is for a stride-1 convolution whose output keeps the input size,
    with a padding that does not depend on the input. Each unsupported argument gets
    one message that says what to do instead.
    """
    kernel = pair(kernel_size)
    if in_channels < 1 or out_channels < 1 or min(kernel) < 1:
        raise ValueError(
            f"{layer} needs positive sizes, got in_channels={in_channels}, "
            f"out_channels={out_channels}, kernel_size={kernel_size}"
        )
    if pair(stride) != (1, 1):
        raise ValueError(f"{layer} supports stride 1 only (got {stride}); {_DOWNSAMPLE_HINT}")
    if pair(dilation) != (1, 1):
        raise ValueError(
            f"{layer} supports dilation 1 only (got {dilation}); use a larger kernel, "
            f"or {_DOWNSAMPLE_HINT}"
        )
    if groups != 1:
        raise ValueError(
            f"{layer} supports groups=1 only (got {groups}); use separate layers per group"
        )
    if padding != "same":
        raise ValueError(
            f"{layer} supports padding='same' only (got {padding!r}); crop the output "
            f"afterwards (a crop is 1-Lipschitz) or {_DOWNSAMPLE_HINT}"
        )
    if odd_kernel and (kernel[0] % 2 == 0 or kernel[1] % 2 == 0):
        raise ValueError(
            f"{layer} with padding='same' needs odd kernel sizes (got {kernel_size}); "
            f"use an odd kernel, or for a 2x2 stride-2 conv {_DOWNSAMPLE_HINT}"
        )
    if padding_mode not in padding_modes:
        raise ValueError(
            f"{layer} padding_mode must be one of {padding_modes} (got {padding_mode!r}); "
            "its bound is proved for these paddings only"
        )
    return kernel


def check_image_input(x: torch.Tensor, in_channels: int) -> None:
    """Raise ``ValueError`` unless ``x`` is ``[batch, in_channels, height, width]``."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"expected input [batch, {in_channels}, height, width], got {tuple(x.shape)}"
        )


def plain_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A plain ``nn.Linear`` holding copies of ``weight`` and ``bias`` (for ``export()``)."""
    out_features, in_features = weight.shape
    plain = nn.Linear(
        in_features, out_features, bias=bias is not None, device=weight.device, dtype=weight.dtype
    )
    with torch.no_grad():
        plain.weight.copy_(weight)
        if bias is not None:
            plain.bias.copy_(bias)
    return plain


def plain_conv2d(weight: torch.Tensor, bias: torch.Tensor | None, padding_mode: str) -> nn.Conv2d:
    """A plain stride-1 'same' ``nn.Conv2d`` holding copies of ``weight`` and ``bias``."""
    out_channels, in_channels, k1, k2 = weight.shape
    plain = nn.Conv2d(
        in_channels,
        out_channels,
        (k1, k2),
        padding="same",
        padding_mode=padding_mode,
        bias=bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        plain.weight.copy_(weight)
        if bias is not None:
            plain.bias.copy_(bias)
    return plain


class AOLLinear(nn.Module):
    """Dense layer ``y = P diag(d) x + b`` with ``||P diag(d)||_2 <= 1`` (Theorem 1)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: str = "paper",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        check_linear_sizes("AOLLinear", in_features, out_features)
        self.in_features = in_features
        self.out_features = out_features
        self.init = check_init_scheme(init)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        initialise_matrix(self.weight, self.init)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def rescaled_weight(self) -> torch.Tensor:
        return self.weight * linear_rescaling_factors(self.weight)[None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.rescaled_weight(), self.bias)

    def lipschitz_bound(self) -> float:
        return 1.0

    def export(self) -> nn.Linear:
        return plain_linear(self.rescaled_weight(), self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, init={self.init!r}"
        )


class AOLConv2d(nn.Module):
    """Convolution with per-input-channel AOL rescaling (Lemma 2); stride 1, 'same' size.

    The bound holds for zero padding (the paper's proof: a maximally padded
    convolution followed by a crop) and for circular padding (the entries of
    ``J^T J`` are sums of the same terms, so the row sums only shrink).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str = "same",
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        init: str = "paper",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        kernel = check_conv_arguments(
            "AOLConv2d", in_channels, out_channels, kernel_size, stride=stride, padding=padding,
            dilation=dilation, groups=groups, padding_mode=padding_mode,
        )  # fmt: skip
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel
        self.padding_mode = padding_mode
        self.init = check_init_scheme(init)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *kernel, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        initialise_kernel(self.weight, self.init)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def rescaled_weight(self) -> torch.Tensor:
        return self.weight * conv_rescaling_factors(self.weight)[None, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return same_size_conv2d(x, self.rescaled_weight(), self.bias, self.padding_mode)

    def lipschitz_bound(self) -> float:
        return 1.0

    def export(self) -> nn.Conv2d:
        return plain_conv2d(self.rescaled_weight(), self.bias, self.padding_mode)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"padding_mode={self.padding_mode!r}, bias={self.bias is not None}, "
            f"init={self.init!r}"
        )


def same_size_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding_mode: str
) -> torch.Tensor:
    """Stride-1 convolution with odd kernel whose output has the input's spatial size."""
    k1, k2 = weight.shape[2:]
    if padding_mode == "zeros":
        return F.conv2d(x, weight, bias, padding=(k1 // 2, k2 // 2))
    padded = F.pad(x, (k2 // 2, k2 // 2, k1 // 2, k1 // 2), mode="circular")
    return F.conv2d(padded, weight, bias)
