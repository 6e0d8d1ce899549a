"""Training: one adapter per task into the hub."""

from ..data import split_data
from .trainer import train

__all__ = ["split_data", "train"]
