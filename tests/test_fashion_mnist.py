"""Fashion-MNIST from Debian's dataset-fashion-mnist package: the real idx files are read
correctly, a short training run works on a slice of them (written to --data-dir), and a
missing dataset is one clear error naming the package."""

import gzip
import json
import os

import numpy as np
import pytest
import torch

from aol.engine import data
from aol.engine.cli import main

PACKAGE_FOLDER = data.FASHION_MNIST_DEBIAN_FOLDER
package_files_absent = pytest.mark.skipif(
    data.fashion_mnist_folder("/nonexistent") is None,
    reason=f"Debian's dataset-fashion-mnist is not installed (no files in {PACKAGE_FOLDER}); "
    "apt-get install dataset-fashion-mnist",
)


def write_idx(path, array: np.ndarray) -> None:
    """An idx file of unsigned bytes, gzipped (the format of the package's files)."""
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


@package_files_absent
def test_the_package_files_hold_the_published_splits():
    """Xiao et al. (arXiv 1708.07747): 60000 / 10000 images of 28x28, 6000 / 1000 per class."""
    folder = data.fashion_mnist_folder("/nonexistent")
    files = data.FASHION_MNIST_FILES
    train_images = data.read_idx(os.path.join(folder, files["train_images"]))
    test_labels = data.read_idx(os.path.join(folder, files["test_labels"]))
    assert train_images.shape == (60000, 28, 28) and train_images.dtype == np.uint8
    assert train_images.max() == 255 and train_images.min() == 0
    assert np.bincount(test_labels).tolist() == [1000] * 10
    train_labels = data.read_idx(os.path.join(folder, files["train_labels"]))
    assert np.bincount(train_labels).tolist() == [6000] * 10


@package_files_absent
def test_training_on_a_slice_of_the_real_files(tmp_path):
    """The first 100 training and 50 test images of the package, written to --data-dir
    (searched before the package), train convnet-xs-padded for one epoch."""
    source = data.fashion_mnist_folder("/nonexistent")
    sizes = {"train_images": 100, "train_labels": 100, "test_images": 50, "test_labels": 50}
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    for key, file in data.FASHION_MNIST_FILES.items():
        write_idx(folder / file, data.read_idx(os.path.join(source, file))[: sizes[key]])
    dataset = data.load("fashion-mnist", tmp_path / "data")
    assert dataset.train_images.shape == (100, 1, 28, 28)
    assert dataset.test_labels.shape == (50,)
    assert 0 <= dataset.train_images.min() and dataset.train_images.max() <= 1
    out = tmp_path / "run"
    code = main(
        ["train", "--dataset", "fashion-mnist", "--architecture", "convnet-xs-padded",
         "--family", "aol", "--seed", "0", "--out", str(out), "--data-dir",
         str(tmp_path / "data"), "--epochs", "1", "--batch-size", "50", "--lr", "0.01",
         "--no-augment", "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed"
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert saved["identity"]["dataset"] == "fashion-mnist"
    assert 0.0 <= result["test_accuracy"] <= 1.0


def test_missing_fashion_mnist_is_one_clear_error_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_DEBIAN_FOLDER", str(tmp_path / "no-package"))
    out = tmp_path / "run"
    code = main(
        ["train", "--dataset", "fashion-mnist", "--architecture", "convnet-xs-padded",
         "--family", "aol", "--seed", "0", "--out", str(out), "--data-dir",
         str(tmp_path / "nowhere")]
    )  # fmt: skip
    error = capsys.readouterr().err
    assert code == 2
    assert "apt-get install dataset-fashion-mnist" in error
    assert len(error.strip().splitlines()) == 1
    assert not out.exists()
    with pytest.raises(data.DatasetNotFoundError, match="dataset-fashion-mnist"):
        data.load("fashion-mnist", tmp_path / "nowhere")


def test_a_file_that_is_not_idx_is_refused(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as stream:
        stream.write(b"not an idx file")
    with pytest.raises(data.DatasetNotFoundError, match="not an idx file"):
        data.read_idx(str(path))


def test_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    assert np.array_equal(data.read_idx(str(tmp_path / "a.gz")), array)


def test_padded_convnet_is_the_convnet_on_the_centred_zero_padded_image():
    from aol import architectures, network_lipschitz_bound

    torch.manual_seed(0)
    padded = architectures.build("convnet-xs-padded", "aol", 10, 1, 28)
    x = torch.rand(2, 1, 28, 28)
    inner = torch.nn.Sequential(*list(padded)[1:])
    torch.testing.assert_close(padded(x), inner(torch.nn.functional.pad(x, (2, 2, 2, 2))))
    assert network_lipschitz_bound(padded) == network_lipschitz_bound(inner)
    with pytest.raises(ValueError, match="ZeroPadToPowerOfTwo"):
        padded(torch.rand(1, 1, 32, 32))


@pytest.mark.parametrize(
    "flag, size, message",
    [("--train-subset", "200", "the training split has 100 images"),
     ("--test-subset", "60", "the test split has 50 images")],
)  # fmt: skip
def test_a_subset_larger_than_the_files_under_data_dir_is_one_line(
    tmp_path, capsys, flag, size, message
):
    """Smaller idx files under --data-dir than the published splits: the subset is checked
    against the split as loaded, before any training step."""
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes = {"train_images": 100, "train_labels": 100, "test_images": 50, "test_labels": 50}
    for key, file in data.FASHION_MNIST_FILES.items():
        shape = (sizes[key], 28, 28) if key.endswith("images") else (sizes[key],)
        write_idx(folder / file, rng.integers(0, 10 if "labels" in key else 256, shape))
    out = tmp_path / "run"
    code = main(
        ["train", "--dataset", "fashion-mnist", "--architecture", "convnet-xs-padded",
         "--family", "aol", "--seed", "0", "--out", str(out), "--data-dir",
         str(tmp_path / "data"), "--epochs", "1", "--device", "cpu", flag, size]
    )  # fmt: skip
    error = capsys.readouterr().err
    assert code == 2 and message in error, error
    assert len(error.strip().splitlines()) == 1
    assert not (out / "checkpoint.pt").exists()
