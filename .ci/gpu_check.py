"""GPU check of the engine, for a machine with CUDA and no internet.

    python3 .ci/gpu_check.py [OUT_DIR]

Writes 50,000 + 10,000 random CIFAR-shaped images in the real CIFAR-10 file format
(synthetic: their md5 sums are registered with torchvision for this process only),
then, on CUDA: trains AOL-Small for 3 epochs (paper recipe, batch 250, augmentation on;
goal: <= 5 s per epoch on one H100), certifies the run (float64, both audits, 20
attacked points), and measures AOL-Small at batch 250 (aol beside standard, interleaved).
Prints seconds per epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys

import numpy as np
import torch
from torchvision.datasets import CIFAR10

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from aol import families  # noqa: E402
from aol.engine.cli import main  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/gpu-check"
# smoke-testing on a CPU: GPU_CHECK_DEVICE=cpu GPU_CHECK_ARCH=convnet-xs GPU_CHECK_IMAGES=200
device = os.environ.get("GPU_CHECK_DEVICE", "cuda")
architecture = os.environ.get("GPU_CHECK_ARCH", "aol-small")
images_per_file = int(os.environ.get("GPU_CHECK_IMAGES", "10000"))
data_dir = os.path.join(out, "data")
folder = os.path.join(data_dir, CIFAR10.base_folder)
os.makedirs(folder, exist_ok=True)
rng = np.random.default_rng(0)
sums = {}
for name, _ in CIFAR10.train_list + CIFAR10.test_list:
    path = os.path.join(folder, name)
    batch = {"data": rng.integers(0, 256, (images_per_file, 3072), dtype=np.uint8),
             "labels": rng.integers(0, 10, images_per_file).tolist()}  # fmt: skip
    with open(path, "wb") as stream:
        pickle.dump(batch, stream)
    sums[name] = hashlib.md5(open(path, "rb").read()).hexdigest()
meta = os.path.join(folder, CIFAR10.meta["filename"])
with open(meta, "wb") as stream:
    pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, stream)
CIFAR10.train_list = [[n, sums[n]] for n, _ in CIFAR10.train_list]
CIFAR10.test_list = [[n, sums[n]] for n, _ in CIFAR10.test_list]
CIFAR10.meta = {**CIFAR10.meta, "md5": hashlib.md5(open(meta, "rb").read()).hexdigest()}
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
