"""Export for inference: fold every weight transform into the weights.

The released AOL code (berndprach/AOL@562bddf) recomputes the rescaling in every forward,
also at test time; an exported model pays for it once.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def export(model: nn.Module) -> nn.Module:
    """Return an independent inference copy of ``model``, in eval mode.

    Every submodule that has an ``export()`` method (the constrained layers of
    every family) is replaced by what it returns: for AOL a plain
    ``torch.nn.Conv2d`` / ``torch.nn.Linear`` with ``P diag(d)`` baked in, so the
    copy pays nothing for the rescaling. The original model is left untouched.
    """
    with torch.no_grad():
        return _replace_exportable(copy.deepcopy(model)).eval()


def _replace_exportable(module: nn.Module) -> nn.Module:
    if hasattr(module, "export"):
        return module.export()
    for name, child in module.named_children():
        setattr(module, name, _replace_exportable(child))
    return module
