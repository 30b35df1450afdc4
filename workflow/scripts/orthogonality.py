"""The AOL paper's Figures 1 and 2 for one trained run: how orthogonal the learned layers are.

Left: ``|J^T J|`` of one trained convolution (its exact Jacobian ``J``, rescaling included,
on the input size it sees in the network; a centre crop of at most ``CROP`` rows). For an
orthogonal layer it is the identity; the paper finds AOL's close to it, with a few
non-zero off-diagonal entries (appendix A.2). Right: the singular values of every
constrained layer's exact Jacobian, largest first: all at most 1 (the bound), and close to
1 where the layer is almost orthogonal (paper Sec. 4).

A layer whose input has more than ``MAX_INPUT_SIZE`` entries is measured on a smaller square
input with the same channels (a convolution's Jacobian is defined for any size); the
legend says so. The run's checkpoint is read from the run folder beside ``result.json``.
"""

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from aol.engine.audit import constrained_layers  # noqa: E402
from aol.engine.certify import load_trained_models  # noqa: E402
from aol.verify import exact_jacobian  # noqa: E402

#: entries of a layer input above which its Jacobian is taken on a smaller image
MAX_INPUT_SIZE = 1024
#: rows and columns of J^T J shown (a centre crop, as the paper's Figure 2)
CROP = 288


def layer_input_shapes(model: torch.nn.Module, names: list[str], sample: torch.Tensor) -> dict:
    """``{name: input shape without the batch}`` of each named layer on one sample."""
    shapes, modules = {}, dict(model.named_modules())

    def record(name: str):
        def hook(_module, inputs, _output) -> None:  # None: the output is left alone
            shapes.setdefault(name, tuple(inputs[0].shape[1:]))

        return hook

    hooks = [modules[name].register_forward_hook(record(name)) for name in names]
    with torch.no_grad():
        model(sample)
    for hook in hooks:
        hook.remove()
    return shapes


def measured_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape``, or for an image input too large a smaller square with the same channels."""
    if len(shape) != 3 or math.prod(shape) <= MAX_INPUT_SIZE:
        return shape
    side = max(1, math.isqrt(MAX_INPUT_SIZE // shape[0]))
    return (shape[0], min(side, shape[1]), min(side, shape[2]))


def layer_jacobian(layer: torch.nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """The exact float64 Jacobian of the layer's linear part (bias removed) at 0."""
    return exact_jacobian(layer, torch.zeros(1, *shape, dtype=torch.float64)).detach()


def singular_values(jacobian: torch.Tensor) -> torch.Tensor:
    """Singular values, largest first, from the eigenvalues of the smaller Gram matrix
    (symmetric: a few times faster than an SVD)."""
    small = (
        jacobian.T @ jacobian if jacobian.shape[1] <= jacobian.shape[0] else jacobian @ jacobian.T
    )
    return torch.linalg.eigvalsh(small).clamp_min(0).sqrt().flip(0)


def centre_crop(matrix: torch.Tensor, size: int = CROP) -> torch.Tensor:
    start = max(0, (matrix.shape[0] - size) // 2)
    return matrix[start : start + size, start : start + size]


def spectra(model, sample) -> tuple[dict, str, torch.Tensor]:
    """Singular values per constrained layer (label -> values), and ``|J^T J|`` of the first
    convolution with a 3x3 (or larger) kernel, else of the first layer."""
    layers = constrained_layers(model)
    shapes = layer_input_shapes(model, [name for name, _ in layers], sample)
    values, heat_name, heat = {}, None, None
    for name, layer in layers:
        shape = measured_shape(shapes[name])
        jacobian = layer_jacobian(layer, shape)
        size = "x".join(map(str, shape)) + ("" if shape == shapes[name] else " (smaller)")
        values[f"{name}: {type(layer).__name__} on {size}"] = singular_values(jacobian)
        kernel = getattr(layer, "kernel_size", (1, 1))
        if heat is None or (heat_name[1] == (1, 1) and max(kernel) >= 3):
            heat_name, heat = (f"{name}: {type(layer).__name__} on {size}", kernel), jacobian
    return values, heat_name[0], (heat.T @ heat).abs()


def draw(values: dict, heat_label: str, gram: torch.Tensor, title: str):
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
    crop = centre_crop(gram)
    image = left.imshow(crop.numpy(), cmap="viridis", vmin=0.0, vmax=max(1.0, crop.max().item()))
    figure.colorbar(image, ax=left, fraction=0.046)
    left.set_title(f"|J^T J|, centre {len(crop)}x{len(crop)}\n{heat_label}", fontsize=8)
    left.set_xticks([])
    left.set_yticks([])
    for label, singular_values in values.items():
        fraction = torch.linspace(0, 1, len(singular_values))
        right.plot(fraction.numpy(), singular_values.numpy(), label=label, linewidth=1)
    right.axhline(1.0, color="black", linewidth=0.6, linestyle="--")
    right.set_xlabel("rank / number of singular values")
    right.set_ylabel("singular value of the exact Jacobian")
    right.set_title("every constrained layer", fontsize=8)
    right.legend(fontsize=5, loc="lower left", ncol=2)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def main(snakemake) -> None:
    run = Path(snakemake.input.result).parent
    result = json.loads(Path(snakemake.input.result).read_text())
    models = load_trained_models(str(run), torch.device("cpu"), result)
    trained = models.trained
    shape = snakemake.params.input_shape
    values, heat_label, gram = spectra(trained, torch.zeros(1, *shape, dtype=torch.float64))
    figure = draw(values, heat_label, gram, f"orthogonality of the trained layers: {run}")
    figure.savefig(snakemake.output.png, dpi=150, bbox_inches="tight")
    figure.savefig(snakemake.output.pdf, bbox_inches="tight")


if __name__ == "__main__" and "snakemake" in globals():
    sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
    main(snakemake)  # noqa: F821
