"""GPU check of the engine, for a machine with CUDA and no internet.

    python3 .ci/gpu_check.py [OUT_DIR]

Writes 50,000 + 10,000 random CIFAR-shaped images in the real CIFAR-10 file format
(synthetic: their md5 sums are registered with torchvision for this process only),
then, on CUDA: trains AOL-Small for 3 epochs (paper recipe, batch 250, augmentation on;
goal: <= 5 s per epoch on one H100), certifies the run (float64, both audits, 20
attacked points), and measures AOL-Small at batch 250 (aol beside standard, interleaved).
Prints seconds per epoch. The table of every family beside 1LLC's published epoch budgets
is ``python -m aol bench gpu`` (docs/engine.md).
"""

from __future__ import annotations

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from aol import families  # noqa: E402
from aol.engine.bench.gpu import write_synthetic_cifar10  # noqa: E402
from aol.engine.cli import main  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/gpu-check"
# smoke-testing on a CPU: GPU_CHECK_DEVICE=cpu GPU_CHECK_ARCH=convnet-xs GPU_CHECK_IMAGES=200
device = os.environ.get("GPU_CHECK_DEVICE", "cuda")
architecture = os.environ.get("GPU_CHECK_ARCH", "aol-small")
images_per_file = int(os.environ.get("GPU_CHECK_IMAGES", "10000"))
data_dir = os.path.join(out, "data")
write_synthetic_cifar10(data_dir, images_per_file)
if "aol" not in families.names():  # not pip-installed: no entry points
    families.register(families.AOL)

name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
print("device:", name, "torch", torch.__version__, flush=True)
run = os.path.join(out, architecture)
common = ["--device", device, "--data-dir", data_dir]
codes = {
    "train": main(["train", "--dataset", "cifar10", "--architecture", architecture, "--family",
                   "aol", "--seed", "0", "--out", run, "--epochs", "3", *common]),
    "certify": main(["certify", "--run", run, "--out", os.path.join(out, "certify.json"),
                     "--attack-points", "20", *common]),
    "measure": main(["measure", "--architecture", architecture, "--families", "aol",
                     "--batch-size", "250", "--out", os.path.join(out, "measure.json"),
                     "--device", device]),
}  # fmt: skip
print("exit codes:", codes)
for line in open(os.path.join(run, "metrics.jsonl")):
    row = json.loads(line)
    print(f"epoch {row['epoch']}: {row['epoch_seconds']:.2f} s training, "
          f"{row['eval_seconds']:.2f} s evaluation")  # fmt: skip
print(open(os.path.join(out, "measure.json")).read())
sys.exit(max(codes.values()))
