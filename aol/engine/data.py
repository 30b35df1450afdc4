"""Datasets as whole tensors in [0, 1] pixel space (x / 255, no normalisation).

As the released AOL code (berndprach/AOL@562bddf ``data/``).

Inputs are never normalised, so a certificate's radius eps means what the papers
mean (an l2 distance in [0, 1] pixel space). Each split is one tensor that can
live on the training device (``Dataset.to``); training indexes it directly.

* ``digits``: scikit-learn's ``load_digits`` (1797 images, 1x8x8, values 0..16
  scaled by 1/16), split once into train/test, stratified by class with a fixed
  seed (``DIGITS_TEST_FRACTION``, ``DIGITS_SPLIT_SEED``), the same for every run.
* ``cifar10`` / ``cifar100``: torchvision's readers of the python-pickle batches
  under ``data_dir`` (their md5 checks included), downloaded only when allowed.
* ``fashion-mnist``: Zalando's Fashion-MNIST (Xiao, Rasul & Vollgraf, arXiv 1708.07747;
  60000 train / 10000 test images, 1x28x28, 10 classes), the four gzipped idx files of
  Debian's ``dataset-fashion-mnist`` package (``FASHION_MNIST_DEBIAN_FOLDER``) or of
  ``data_dir`` (``fashion_mnist_folder`` says which), read directly (``read_idx``). Never
  downloaded: install the package, or put the files under ``data_dir``.

``subset_indices`` picks a fixed, class-balanced subset of a split: of the training split
(``python -m aol train --train-subset N``), the same for every training seed, and of the
test split (``--test-subset N`` of ``train``'s monitoring and of ``certify``).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

import numpy as np
import torch

DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0

#: Where Debian's ``dataset-fashion-mnist`` package puts the files (``dpkg -L``).
FASHION_MNIST_DEBIAN_FOLDER = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class DatasetInfo:
    """Shape facts known without loading: used to validate arguments before any work."""

    name: str
    channels: int
    image_size: int
    num_classes: int
    colour: bool  # colour augmentation applies (RGB)
    horizontal_flip: bool  # the flip keeps the class (not for digits)
    #: per-channel mean of the training images in [0, 1], for recipes that centre inputs
    channel_mean: tuple[float, ...] = ()
    #: images in the training and test splits as ``load`` gives them
    train_size: int = 0
    test_size: int = 0


# CIFAR means as in berndprach/1LipschitzLayersCompared@01e3f2a datasets/datasets_.py;
# digits: the mean of the training split (python -c "from aol.engine import data;
# print(data.load('digits').train_images.mean().item())"); Fashion-MNIST: the mean of its
# training images (train-images-idx3-ubyte.gz of the Debian package). Split sizes: CIFAR's
# 50000 / 10000 and Fashion-MNIST's 60000 / 10000 (Krizhevsky 2009; Xiao et al. 2017), and
# digits' 1797 images split into 1347 / 450 (DIGITS_TEST_FRACTION, stratified)
DATASETS = {
    "digits": DatasetInfo(
        "digits", 1, 8, 10, colour=False, horizontal_flip=False, channel_mean=(0.3052247,),
        train_size=1347, test_size=450,
    ),
    "cifar10": DatasetInfo(
        "cifar10", 3, 32, 10, colour=True, horizontal_flip=True,
        channel_mean=(0.49139968, 0.48215841, 0.44653091), train_size=50000, test_size=10000,
    ),
    "cifar100": DatasetInfo(
        "cifar100", 3, 32, 100, colour=True, horizontal_flip=True,
        channel_mean=(0.5071, 0.4865, 0.4409), train_size=50000, test_size=10000,
    ),
    # the horizontal flip keeps every Fashion-MNIST class (garments, bags, shoes)
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 1, 28, 10, colour=False, horizontal_flip=True, channel_mean=(0.2860406,),
        train_size=60000, test_size=10000,
    ),
}  # fmt: skip


#: Subsets are drawn with this seed, never with the run's: every seed of a run with
#: ``--train-subset N`` trains on the same N images.
SUBSET_SEED = 0


class UnknownDatasetError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are absent (or fail their checksum) and may not be downloaded."""


class SubsetError(ValueError):
    """A subset that its split cannot give."""


def info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}"
        )
    return DATASETS[name]


@dataclass
class Dataset:
    info: DatasetInfo
    train_images: torch.Tensor  # float32 [N, C, H, W] in [0, 1]
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor
    test_labels: torch.Tensor

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(
            self.info,
            self.train_images.to(device),
            self.train_labels.to(device),
            self.test_images.to(device),
            self.test_labels.to(device),
        )

    def with_train_subset(self, size: int) -> Dataset:
        """This dataset with its training split cut to ``subset_indices(size)``."""
        indices = subset_indices(self.train_labels.cpu(), size, "training")
        return Dataset(
            self.info,
            self.train_images[indices.to(self.train_images.device)],
            self.train_labels[indices.to(self.train_labels.device)],
            self.test_images,
            self.test_labels,
        )

    def with_test_subset(self, size: int) -> Dataset:
        """This dataset with its test split cut to ``subset_indices(size)``."""
        indices = subset_indices(self.test_labels.cpu(), size, "test")
        return Dataset(
            self.info,
            self.train_images,
            self.train_labels,
            self.test_images[indices.to(self.test_images.device)],
            self.test_labels[indices.to(self.test_labels.device)],
        )


def subset_indices(labels: torch.Tensor, size: int, split: str = "training") -> torch.Tensor:
    """Ascending indices of a fixed, class-balanced subset of ``size`` examples of a split
    (``labels``; ``split`` names it in the error).

    The examples are put in the order of one permutation drawn with ``SUBSET_SEED``
    and dealt class by class: the first example of every class in that order, then the
    second of every class, and so on; the subset is the first ``size`` dealt. Class counts
    differ by at most one, except where a class has no examples left; a smaller subset is
    part of every larger one; the run's seed plays no part. SubsetError unless
    1 <= size <= len(labels)."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= len(labels):
        raise SubsetError(
            f"{split} subset of {size!r} images: the {split} split has {len(labels)} "
            f"images, give 1 to {len(labels)}"
        )
    generator = torch.Generator().manual_seed(SUBSET_SEED)
    order = torch.randperm(len(labels), generator=generator)
    shuffled = labels[order]
    rank_in_class = torch.empty(len(labels), dtype=torch.int64)
    for label in shuffled.unique():
        positions = (shuffled == label).nonzero().squeeze(1)
        rank_in_class[positions] = torch.arange(len(positions))
    deal = torch.argsort(rank_in_class * len(labels) + torch.arange(len(labels)))
    return order[deal[:size]].sort().values


def load(name: str, data_dir: str | os.PathLike = "data", download: bool = False) -> Dataset:
    """Load dataset ``name`` onto the CPU (``Dataset.to(device)`` moves it)."""
    dataset_info = info(name)
    if name == "digits":
        return _load_digits(dataset_info)
    if name == "fashion-mnist":
        return _load_fashion_mnist(dataset_info, data_dir)
    return _load_cifar(dataset_info, data_dir, download)


def _load_digits(dataset_info: DatasetInfo) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8], in [0, 1]
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images,
        labels,
        test_size=DIGITS_TEST_FRACTION,
        stratify=labels,
        random_state=DIGITS_SPLIT_SEED,
    )
    return Dataset(
        dataset_info,
        torch.from_numpy(train_x),
        torch.from_numpy(train_y),
        torch.from_numpy(test_x),
        torch.from_numpy(test_y),
    )


def cifar_folder(name: str, data_dir: str | os.PathLike) -> str:
    """Where torchvision expects the extracted python version of CIFAR-``name``."""
    from torchvision.datasets import CIFAR10, CIFAR100

    reader = CIFAR10 if name == "cifar10" else CIFAR100
    return os.path.join(os.fspath(data_dir), reader.base_folder)


def _load_cifar(dataset_info: DatasetInfo, data_dir, download: bool) -> Dataset:
    from torchvision.datasets import CIFAR10, CIFAR100

    reader = CIFAR10 if dataset_info.name == "cifar10" else CIFAR100
    try:
        train = reader(os.fspath(data_dir), train=True, download=download)
        test = reader(os.fspath(data_dir), train=False, download=download)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted ..."
        raise DatasetNotFoundError(missing_cifar_message(dataset_info.name, data_dir)) from error

    def as_tensors(split) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(split.data).permute(0, 3, 1, 2).float().div_(255.0)
        return images.contiguous(), torch.tensor(split.targets, dtype=torch.int64)

    train_images, train_labels = as_tensors(train)
    test_images, test_labels = as_tensors(test)
    return Dataset(dataset_info, train_images, train_labels, test_images, test_labels)


def missing_cifar_message(name: str, data_dir) -> str:
    archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    return (
        f"{name} not found (or its files fail torchvision's md5 check) in "
        f"{cifar_folder(name, data_dir)}; download {archive} "
        f"(https://www.cs.toronto.edu/~kriz/cifar.html) and extract it into {os.fspath(data_dir)}, "
        f"or pass --download to let torchvision fetch it"
    )


def cifar_files_present(name: str, data_dir) -> bool:
    """A cheap presence check (no checksums) used to fail fast before any work."""
    from torchvision.datasets import CIFAR10, CIFAR100

    reader = CIFAR10 if name == "cifar10" else CIFAR100
    folder = cifar_folder(name, data_dir)
    files = [entry[0] for entry in reader.train_list + reader.test_list]
    files.append(reader.meta["filename"])
    return all(os.path.isfile(os.path.join(folder, file)) for file in files)


def fashion_mnist_candidates(data_dir) -> list[str]:
    """Folders searched for the four Fashion-MNIST files, in order."""
    data_dir = os.fspath(data_dir)
    return [os.path.join(data_dir, "fashion-mnist"), data_dir, FASHION_MNIST_DEBIAN_FOLDER]


def fashion_mnist_folder(data_dir) -> str | None:
    """The first of ``fashion_mnist_candidates`` holding all four files, or None."""
    for folder in fashion_mnist_candidates(data_dir):
        if all(os.path.isfile(os.path.join(folder, f)) for f in FASHION_MNIST_FILES.values()):
            return folder
    return None


def missing_fashion_mnist_message(data_dir) -> str:
    folders = ", ".join(fashion_mnist_candidates(data_dir))
    return (
        f"fashion-mnist not found (looked for {', '.join(FASHION_MNIST_FILES.values())} in "
        f"{folders}); install Debian's package: apt-get install dataset-fashion-mnist"
    )


def read_idx(path: str) -> np.ndarray:
    """A gzipped idx file (LeCun's MNIST format: zero, zero, type 0x08 = ubyte, number of
    dimensions, then big-endian int32 sizes and the data) as a uint8 array."""
    with gzip.open(path, "rb") as stream:
        content = stream.read()
    if len(content) < 4 or content[:3] != b"\x00\x00\x08":
        raise DatasetNotFoundError(f"{path} is not an idx file of unsigned bytes")
    dimensions = content[3]
    shape = tuple(np.frombuffer(content, dtype=">i4", count=dimensions, offset=4))
    data = np.frombuffer(content, dtype=np.uint8, offset=4 + 4 * dimensions)
    if data.size != int(np.prod(shape)):
        raise DatasetNotFoundError(f"{path} holds {data.size} bytes, its header says {shape}")
    return data.reshape(shape)


def _load_fashion_mnist(dataset_info: DatasetInfo, data_dir) -> Dataset:
    folder = fashion_mnist_folder(data_dir)
    if folder is None:
        raise DatasetNotFoundError(missing_fashion_mnist_message(data_dir))
    files = FASHION_MNIST_FILES.items()
    arrays = {key: read_idx(os.path.join(folder, file)) for key, file in files}

    def images(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array.copy())[:, None].float().div_(255.0)  # [N, 1, 28, 28]

    def labels(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array.astype(np.int64))

    return Dataset(
        dataset_info,
        images(arrays["train_images"]),
        labels(arrays["train_labels"]),
        images(arrays["test_images"]),
        labels(arrays["test_labels"]),
    )
