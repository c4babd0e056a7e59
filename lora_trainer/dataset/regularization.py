"""How regularization images are balanced against the training images (kohya's DreamBoothDataset rule)."""

from __future__ import annotations


def balance_reg_repeats(num_train_samples: int, reg_repeats: list[int]) -> list[int]:
    """The repeats each regularization image trains with; 0 means the image is not used.

    kohya walks the regularization images in order: the first pass gives each image its
    folder's repeats, later passes add one repeat at a time, and it stops as soon as the
    regularization samples reach the number of training samples (images x repeats).
    """
    result = [0] * len(reg_repeats)
    if not reg_repeats:
        return result
    count, first_pass = 0, True
    while count < num_train_samples:
        for i, repeats in enumerate(reg_repeats):
            step = repeats if first_pass else 1
            result[i] += step
            count += step
            if count >= num_train_samples:
                break
        first_pass = False
    return result
