"""The contract every constrained layer of every family implements, and its shared parts.

A constrained layer (AOL, SOC, Cayley, spectral normalisation, ...) is an ``nn.Module``
with four methods besides ``forward``:

* ``lipschitz_bound()``: a *guaranteed* upper bound on its l2 Lipschitz constant at the
  current weights, valid for every input size (a float; certification multiplies them);
* ``weight_transform()``: what a training step computes from the parameters before it
  can convolve (AOL's rescaling, SOC's scaled skew filter, Cayley's per-frequency
  transform, ...); this is what ``python -m aol measure`` and ``python -m aol bench
  layers`` time;
* ``export()``: a module computing the same function with the transform folded in
  (for AOL a plain ``nn.Conv2d``), used for inference and certification;
* ``multiply_adds(input_shape, batch_size)``: forward multiply-adds of one training
  step, in the terms of Table 1 of "1-Lipschitz Layers Compared" (Prach et al., CVPR
  2024), so measured cost can be set beside predicted cost.

``LipschitzConv2d`` and ``LipschitzLinear`` hold what all families share: torch's
constructor order (``in_channels, out_channels, kernel_size, stride, padding,
dilation, groups, bias, padding_mode``; family options keyword-only), one argument
check with one wording for what a family does not support, the size attributes, the
bias, and one ``extra_repr``. A family's layer subclasses one of them, creates its
parameters and implements the four methods.

Why not ``torch.nn.utils.parametrize``: it fits a transform that maps a weight to a
weight of the same convolution. SOC's transform is a filter used in a truncated
series, Cayley's (and LOT's, BRO's, Sandwich's) depends on the input size and lives in
the Fourier domain, and SLL's and CPL's layers are residual blocks with a ReLU inside;
``export()`` covers all of them with one method, and AOL's export is still a one-line
fold.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

#: Paddings whose bound the project proves (zero padding and circular padding).
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


def check_image_input(x: torch.Tensor, in_channels: int) -> None:
    """Raise ``ValueError`` unless ``x`` is ``[batch, in_channels, height, width]``."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"expected input [batch, {in_channels}, height, width], got {tuple(x.shape)}"
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


def same_padding(kernel_size, dilation) -> tuple[int, int, int, int]:
    """``F.pad`` amounts ``(left, right, top, bottom)`` of a 'same' convolution: the dilated
    extent minus one, split evenly, the odd one on the right/bottom (torch's convention)."""
    (k1, k2), (d1, d2) = pair(kernel_size), pair(dilation)
    total_rows, total_columns = d1 * (k1 - 1), d2 * (k2 - 1)
    return (
        total_columns // 2, total_columns - total_columns // 2,
        total_rows // 2, total_rows - total_rows // 2,
    )  # fmt: skip


def same_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding_mode: str,
    stride=1,
    dilation=1,
) -> torch.Tensor:
    """The 'same' convolution (``same_size_conv2d``) with ``dilation``, kept at every
    ``stride``-th pixel: a strided convolution is a subsampled stride-1 one, so its output
    has ``ceil(n / stride)`` pixels and any bound of the stride-1 map holds for it."""
    if pair(stride) == (1, 1) and pair(dilation) == (1, 1):
        return same_size_conv2d(x, weight, bias, padding_mode)
    mode = "constant" if padding_mode == "zeros" else padding_mode
    padded = F.pad(x, same_padding(weight.shape[2:], dilation), mode=mode)
    return F.conv2d(padded, weight, bias, stride=pair(stride), dilation=pair(dilation))


def frozen_parameter(tensor: torch.Tensor | None) -> nn.Parameter | None:
    """A detached copy of ``tensor`` as a parameter without gradient (None stays None): how an
    exported inference module keeps a layer's weights."""
    if tensor is None:
        return None
    return nn.Parameter(tensor.detach().clone(), requires_grad=False)


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


def plain_conv2d(
    weight: torch.Tensor, bias: torch.Tensor | None, padding_mode: str, stride=1, dilation=1
) -> nn.Module:
    """A plain 'same' ``nn.Conv2d`` holding copies of ``weight`` and ``bias`` (``same_conv2d``).

    A strided convolution whose padding is uneven (even kernels) becomes
    ``nn.Sequential(pad, nn.Conv2d(padding=0))``.
    """
    out_channels, in_channels, k1, k2 = weight.shape
    left, right, top, bottom = same_padding((k1, k2), dilation)
    if pair(stride) == (1, 1):
        padding = "same"
    elif (left, top) == (right, bottom):
        padding = (top, left)
    else:
        padding = 0
    plain = nn.Conv2d(
        in_channels,
        out_channels,
        (k1, k2),
        stride=pair(stride),
        padding=padding,
        dilation=pair(dilation),
        padding_mode=padding_mode,
        bias=bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        plain.weight.copy_(weight)
        if bias is not None:
            plain.bias.copy_(bias)
    if padding != 0 or (left, right, top, bottom) == (0, 0, 0, 0):
        return plain
    pad = nn.ZeroPad2d if padding_mode == "zeros" else nn.CircularPad2d
    return nn.Sequential(pad((left, right, top, bottom)), plain)


class LipschitzLayer(nn.Module):
    """Base of every constrained layer: the four methods of the contract, and construction.

    The constructors of ``LipschitzConv2d`` / ``LipschitzLinear`` do the shared work, then
    call three hooks a family may override: ``_set_options(**options)`` (the family's
    keyword-only options; list their names in ``options`` so ``extra_repr`` shows them),
    ``_weight_shape()`` and ``_add_state(device, dtype)`` (parameters or buffers besides
    ``weight`` and ``bias``). ``reset_parameters()`` draws the initial values.
    """

    options: tuple[str, ...] = ()

    def lipschitz_bound(self) -> float:
        """A guaranteed upper bound on the l2 Lipschitz constant at the current weights."""
        raise NotImplementedError

    def weight_transform(self) -> torch.Tensor:
        """The transform a training step computes from the parameters (the thing timed)."""
        raise NotImplementedError

    def export(self) -> nn.Module:
        """An inference module computing the same function with the transform folded in."""
        raise NotImplementedError

    def multiply_adds(self, input_shape: tuple[int, ...], batch_size: int) -> int:
        """Forward multiply-adds of one training step on ``batch_size`` inputs of a shape."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        raise NotImplementedError

    def _set_options(self) -> None:
        """Check and store the family's keyword-only constructor options (none here)."""

    def _add_state(self, device, dtype) -> None:
        """Create parameters or buffers besides ``weight`` and ``bias`` (none here)."""

    def _create(self, out_size: int, bias: bool, device, dtype, options: dict) -> None:
        known = inspect.signature(self._set_options).parameters
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected options {unknown}; "
                f"its options are {list(known)}"
            )
        self._set_options(**options)
        self.weight = nn.Parameter(torch.empty(self._weight_shape(), device=device, dtype=dtype))
        self._add_state(device, dtype)
        self.bias = (
            nn.Parameter(torch.empty(out_size, device=device, dtype=dtype)) if bias else None
        )
        self.reset_parameters()

    def _options_repr(self) -> str:
        return "".join(f", {name}={getattr(self, name)!r}" for name in self.options)


class IterationsOption:
    """The keyword option ``iterations`` (at least 1; default: the class's
    ``default_iterations``) of a family whose transform is an iteration (BCOP's Björck steps,
    LOT's Newton-Schulz steps). A mixin before ``LipschitzConv2d`` / ``LipschitzLinear``."""

    options = ("iterations",)
    default_iterations: int

    def _set_options(self, *, iterations: int | None = None) -> None:
        iterations = self.default_iterations if iterations is None else iterations
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.iterations = iterations


class LipschitzConv2d(LipschitzLayer):
    """Base of the constrained convolutions: 'same' padding, by default stride 1.

    Arguments in ``torch.nn.Conv2d``'s order; ``padding`` must be 'same', ``stride``,
    ``dilation`` and ``groups`` 1 (one ``ValueError`` wording for each, saying what to do
    instead) unless the class sets ``supports_stride`` / ``supports_dilation`` (then the
    layer is ``same_conv2d``: the 'same' convolution kept at every ``stride``-th pixel);
    ``padding_mode`` defaults to the first of the class's ``padding_modes`` (the paddings
    its bound is proved for); ``odd_kernel = False`` admits even kernels at stride 1
    (strided layers take any kernel). Family options are keyword-only (``**options``).
    """

    padding_modes: tuple[str, ...] = PADDING_MODES
    odd_kernel: bool = True
    supports_stride: bool = False
    supports_dilation: bool = False

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
        padding_mode: str | None = None,
        *,
        device=None,
        dtype=None,
        **options,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride)
        self.dilation = pair(dilation)
        self.padding_mode = self.padding_modes[0] if padding_mode is None else padding_mode
        self._check_arguments(kernel_size, stride, padding, dilation, groups)
        self._create(out_channels, bias, device, dtype, options)

    def _check_arguments(self, kernel_size, stride, padding, dilation, groups) -> None:
        """Every unsupported argument gets one message that says what to do instead: the
        bound of every constrained convolution is for a stride-1 convolution whose output
        keeps the input size, with a padding that does not depend on the input."""
        layer, kernel = type(self).__name__, self.kernel_size
        if self.in_channels < 1 or self.out_channels < 1 or min(kernel) < 1:
            raise ValueError(
                f"{layer} needs positive sizes, got in_channels={self.in_channels}, "
                f"out_channels={self.out_channels}, kernel_size={kernel_size}"
            )
        if min(self.stride) < 1 or min(self.dilation) < 1:
            raise ValueError(f"{layer} needs stride and dilation >= 1, got {stride}, {dilation}")
        if self.stride != (1, 1) and not self.supports_stride:
            raise ValueError(f"{layer} supports stride 1 only (got {stride}); {_DOWNSAMPLE_HINT}")
        if self.dilation != (1, 1) and not self.supports_dilation:
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
        even = kernel[0] % 2 == 0 or kernel[1] % 2 == 0
        if self.odd_kernel and even and self.stride == (1, 1):
            raise ValueError(
                f"{layer} with padding='same' needs odd kernel sizes (got {kernel_size}); "
                f"use an odd kernel, or for a 2x2 stride-2 conv {_DOWNSAMPLE_HINT}"
            )
        if self.padding_mode not in self.padding_modes:
            raise ValueError(
                f"{layer} padding_mode must be one of {self.padding_modes} "
                f"(got {self.padding_mode!r}); its bound is proved for these paddings only"
            )

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels, *self.kernel_size)

    def convolution_multiply_adds(self, input_shape, batch_size: int, channels=None) -> int:
        """``C = b h w c_in c_out k1 k2`` of Table 1 (``channels``: square ``c x c`` instead)."""
        height, width = input_shape[-2:]
        k1, k2 = self.kernel_size
        c_in, c_out = (channels, channels) if channels else (self.in_channels, self.out_channels)
        return batch_size * height * width * c_in * c_out * k1 * k2

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
            + "".join(
                f", {name}={getattr(self, name)}"
                for name in ("stride", "dilation")
                if getattr(self, name) != (1, 1)
            )
            + f", padding_mode={self.padding_mode!r}, bias={self.bias is not None}"
            + self._options_repr()
        )


class LipschitzLinear(LipschitzLayer):
    """Base of the constrained dense layers: ``torch.nn.Linear``'s arguments, then the
    family's keyword-only options."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, *, device=None, dtype=None,
        **options,
    ) -> None:  # fmt: skip
        super().__init__()
        check_linear_sizes(type(self).__name__, in_features, out_features)
        self.in_features = in_features
        self.out_features = out_features
        self._create(out_features, bias, device, dtype, options)

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}" + self._options_repr()
        )
