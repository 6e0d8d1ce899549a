"""Training: one adapter per task into the hub; metrics with scikit-learn."""

from .trainer import split_data, train

__all__ = ["split_data", "train"]
