"""Data loading (digits split, CIFAR files in the real format) and the batched augmentation."""

import hashlib
import os
import pickle

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10, CIFAR100

import aol
from aol.engine import data
from aol.engine.augment import Augmentation, colour_jitter, random_affine
from aol.engine.cli import main


def test_digits_split_is_fixed_stratified_and_in_unit_range():
    first, second = data.load("digits"), data.load("digits")
    assert torch.equal(first.test_images, second.test_images)
    assert first.train_images.shape[1:] == (1, 8, 8)
    assert len(first.train_labels) + len(first.test_labels) == 1797
    assert first.train_images.min() == 0 and first.train_images.max() == 1
    train_share = torch.bincount(first.train_labels) / len(first.train_labels)
    test_share = torch.bincount(first.test_labels) / len(first.test_labels)
    assert (train_share - test_share).abs().max() < 0.01  # stratified


def write_cifar(root, reader, images_per_file, num_classes, monkeypatch):
    """Write python-pickle batches in the format torchvision reads and register their md5s."""
    folder = os.path.join(root, reader.base_folder)
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    label_key = "labels" if reader is CIFAR10 else "fine_labels"
    checksums = {}
    for name, _ in reader.train_list + reader.test_list:
        batch = {
            "data": rng.integers(0, 256, (images_per_file, 3072), dtype=np.uint8),
            label_key: rng.integers(0, num_classes, images_per_file).tolist(),
        }
        path = os.path.join(folder, name)
        with open(path, "wb") as stream:
            pickle.dump(batch, stream)
        checksums[name] = hashlib.md5(open(path, "rb").read()).hexdigest()
    meta_path = os.path.join(folder, reader.meta["filename"])
    with open(meta_path, "wb") as stream:
        pickle.dump({reader.meta["key"]: [f"class{i}" for i in range(num_classes)]}, stream)
    # torchvision checks every file against these md5 sums: give it the sums of our files
    monkeypatch.setattr(reader, "train_list", [[n, checksums[n]] for n, _ in reader.train_list])
    monkeypatch.setattr(reader, "test_list", [[n, checksums[n]] for n, _ in reader.test_list])
    meta_md5 = hashlib.md5(open(meta_path, "rb").read()).hexdigest()
    monkeypatch.setattr(reader, "meta", {**reader.meta, "md5": meta_md5})
    return folder


@pytest.mark.parametrize(
    "name, reader, classes", [("cifar10", CIFAR10, 10), ("cifar100", CIFAR100, 100)]
)
def test_cifar_loads_from_real_format_files(tmp_path, monkeypatch, name, reader, classes):
    folder = write_cifar(tmp_path, reader, 6, classes, monkeypatch)
    dataset = data.load(name, tmp_path)
    train_files = len(reader.train_list)
    assert dataset.train_images.shape == (6 * train_files, 3, 32, 32)
    assert dataset.test_images.shape == (6, 3, 32, 32)
    assert dataset.train_images.dtype == torch.float32
    # pixel (row 0, col 1) of image 0, green channel = byte 1024 + 1 of the first row / 255
    with open(os.path.join(folder, reader.test_list[0][0]), "rb") as stream:
        raw = pickle.load(stream)
    assert dataset.test_images[0, 1, 0, 1].item() == pytest.approx(raw["data"][0, 1025] / 255)
    assert 0 <= dataset.train_images.min() and dataset.train_images.max() <= 1


def test_corrupted_cifar_fails_the_md5_check(tmp_path, monkeypatch):
    folder = write_cifar(tmp_path, CIFAR10, 4, 10, monkeypatch)
    with open(os.path.join(folder, "data_batch_3"), "ab") as stream:
        stream.write(b"x")
    with pytest.raises(data.DatasetNotFoundError, match="md5"):
        data.load("cifar10", tmp_path)


def test_cifar_training_runs_on_real_format_files(tmp_path, monkeypatch):
    write_cifar(tmp_path / "data", CIFAR10, 8, 10, monkeypatch)
    out = tmp_path / "run"
    code = main(
        ["train", "--dataset", "cifar10", "--architecture", "convnet-xs", "--family", "aol",
         "--seed", "0", "--out", str(out), "--epochs", "1", "--batch-size", "16",
         "--data-dir", str(tmp_path / "data"), "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    assert (out / "result.json").exists() and (out / "checkpoint.pt").exists()


def test_missing_cifar_is_one_clear_error_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        ["train", "--dataset", "cifar100", "--architecture", "aol-small", "--family", "aol",
         "--seed", "0", "--out", str(out), "--data-dir", str(tmp_path / "nowhere")]
    )  # fmt: skip
    error = capsys.readouterr().err
    assert code == 2
    assert "cifar-100-python" in error and "--download" in error
    assert len(error.strip().splitlines()) == 1
    assert not out.exists()


def test_augmentation_is_reproducible_and_stays_in_range():
    images = torch.rand(64, 3, 32, 32)
    augmentation = Augmentation()
    first = augmentation(images, torch.Generator().manual_seed(3))
    again = augmentation(images, torch.Generator().manual_seed(3))
    other = augmentation(images, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 1


def test_flip_happens_about_half_the_time_and_only_when_allowed():
    # an image whose left half is bright: after a flip, its right half is bright
    images = torch.zeros(400, 1, 16, 16)
    images[..., :8] = 1.0
    generator = torch.Generator().manual_seed(0)
    flipped = random_affine(images, generator, horizontal_flip=True)
    right_brighter = flipped[..., 8:].mean(dim=(1, 2, 3)) > flipped[..., :8].mean(dim=(1, 2, 3))
    assert 0.4 < right_brighter.double().mean() < 0.6
    kept = random_affine(images, generator, horizontal_flip=False)
    assert not (kept[..., 8:].mean(dim=(1, 2, 3)) > kept[..., :8].mean(dim=(1, 2, 3))).any()


def test_colour_jitter_keeps_grey_images_grey_and_changes_brightness():
    grey = torch.full((32, 3, 4, 4), 0.5)
    out = colour_jitter(grey, torch.Generator().manual_seed(0))
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-5)  # hue/saturation leave grey alone
    shifts = out.mean(dim=(1, 2, 3)) - 0.5
    assert shifts.abs().max() <= 0.1 + 1e-5 and shifts.std() > 0.01  # brightness +-0.1


def test_crop_flip_gives_windows_of_the_mean_padded_image():
    """Every output is a 1LLC crop: a window of the image padded by 4 with the mean colour
    (zeros after centring), flipped or not; all 81 offsets and both flips are searched."""
    from aol.engine.augment import CropFlip

    fill = (0.25, 0.5, 0.75)
    images = torch.rand(6, 3, 5, 5)
    generator = torch.Generator().manual_seed(0)
    out = CropFlip(fill=fill)(images, generator)
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images - torch.tensor(fill)[:, None, None], (4, 4, 4, 4))
    padded = padded + torch.tensor(fill)[:, None, None]
    for image, result in zip(padded, out, strict=True):
        windows = [
            window
            for top in range(9)
            for left in range(9)
            for window in (image[:, top : top + 5, left : left + 5],)
            for window in (window, window.flip(2))
        ]
        assert any(torch.equal(result, window) for window in windows)
    unflipped = CropFlip(fill=fill, padding=0, horizontal_flip=False)(images, generator)
    torch.testing.assert_close(unflipped, images)


def test_1llc_recipe_centres_inside_the_network_and_keeps_the_jacobian():
    """Centring is a translation: the network's Jacobian at x is the uncentred one's at
    x - mean, so its Lipschitz constant (and every certificate) is unchanged."""
    from aol.engine import recipes
    from aol.engine.run_folder import build_model, run_identity
    from aol.nn.modules import Centre
    from aol.verify import exact_jacobian

    recipe = recipes.get("1llc")
    assert recipe.augmentation == "crop-flip" and recipe.centre_inputs
    identity = run_identity("digits", "aol-digits", "aol", 0, "1llc", recipe.as_dict())
    torch.manual_seed(0)
    centred = build_model(identity)
    assert isinstance(centred[0], Centre) and aol.network_lipschitz_bound(centred) == 1.0
    plain = torch.nn.Sequential(*list(centred)[1:])
    x = torch.rand(1, 1, 8, 8)
    mean = torch.tensor(data.info("digits").channel_mean)[:, None, None]
    torch.testing.assert_close(exact_jacobian(centred, x), exact_jacobian(plain, x - mean))
    paper = run_identity("digits", "aol-digits", "aol", 0, "paper", recipes.get("paper").as_dict())
    assert not isinstance(build_model(paper)[0], Centre)
