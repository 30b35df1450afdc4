"""Peak training-step memory: the CPU accounting against a hand count."""

import torch

from aol.engine.memory import CPU_METHOD, peak_training_memory


def test_cpu_peak_memory_counts_parameters_state_saved_tensors_and_gradients():
    layer = torch.nn.Linear(100, 50)
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(32, 100)

    def forward_loss():
        return layer(x).square().mean()

    peak = peak_training_memory(forward_loss, optimiser, torch.device("cpu"), steps=3)
    float_bytes = 4
    parameters = (100 * 50 + 50) * float_bytes
    saved = (32 * 100 + 32 * 50) * float_bytes  # the linear's input and the squared output
    loss = float_bytes
    # parameters + momentum buffers + gradients + saved activations + the loss
    assert peak.bytes == 3 * parameters + saved + loss
    assert peak.method == CPU_METHOD
