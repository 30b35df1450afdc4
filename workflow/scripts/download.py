"""Download a CIFAR dataset with torchvision into data_dir (what the engine reads there),
verify it, and write the marker file the training rules wait for."""

import sys
from pathlib import Path

import torchvision.datasets

READERS = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}


def download(dataset: str, data_dir: str) -> None:
    reader = READERS[dataset]
    for train in (True, False):
        reader(data_dir, train=train, download=True)


def main(snakemake) -> None:
    marker = Path(snakemake.output.marker)  # data_dir/.DATASET.downloaded
    download(snakemake.wildcards.dataset, str(marker.parent))
    marker.write_text("downloaded by workflow/scripts/download.py\n")


if __name__ == "__main__" and "snakemake" in globals():
    sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821
    main(snakemake)  # noqa: F821
