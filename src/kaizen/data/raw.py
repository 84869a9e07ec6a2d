"""The record every dataset reader returns: a dataset as stored, before validation split, subset and
normalisation. It imports nothing of kaizen.data but the row copier, so every reader can depend on it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kaizen.data.memory import take_rows


@dataclass
class RawData:
    """A dataset as stored: train and test split, before validation split, subset and normalisation."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list[str]
    source: str
    train_paths: list[str] | None = None  # the source file of each row (file-based formats), else None
    test_paths: list[str] | None = None
    val_rows: np.ndarray | None = None  # examples of train that are a given validation split (a val/ folder)
    # the rows of train_x (test_x) that are the training (test) examples, in order; None: all of them
    train_rows: np.ndarray | None = None
    test_rows: np.ndarray | None = None

    def rows(self, split: str, index: np.ndarray | None = None) -> np.ndarray:
        """Return the rows of `split`'s array ('train' or 'test') that hold its examples `index` (all: None)."""
        base = self.train_rows if split == "train" else self.test_rows
        if base is None:
            count = len(self.train_y if split == "train" else self.test_y)
            return np.arange(count) if index is None else np.asarray(index)
        return base if index is None else base[index]

    def images(self, split: str, index: np.ndarray | None = None) -> np.ndarray:
        """Return the images of `split`'s examples `index` (all: None), as stored, copied into memory."""
        return take_rows(self.train_x if split == "train" else self.test_x, self.rows(split, index))
