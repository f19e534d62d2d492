"""scikit-learn's bundled digits as ViT input: 8x8 images in [0, 1], a fixed split."""

import numpy as np

__all__ = ["digits_split", "TEST_FRACTION", "SPLIT_SEED"]

TEST_FRACTION = 0.2
SPLIT_SEED = 0


def digits_split():
    """``((train_images, train_labels), (test_images, test_labels))``; images (n, 1, 8, 8).

    Raises
    ------
    ImportError
        If scikit-learn is missing, saying how to install it.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits data set needs scikit-learn: pip install scikit-learn") \
            from None
    digits = load_digits()
    images = (digits.images / 16.0)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    test = order[:int(len(labels) * TEST_FRACTION)]
    train = order[int(len(labels) * TEST_FRACTION):]
    return (images[train], labels[train]), (images[test], labels[test])
