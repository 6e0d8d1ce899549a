"""The review loop: which captured answers deserve a person's look, and their corrections as training data.

``queue`` ranks captured answers (``lora_router.capture``), ``labels`` turns
a correction into instruction lines in ``DIR/labels/``, ``console`` is the
browser page a person works in (``lora-router review``; the serve extra).
"""

from .labels import Correction, LabelsWriter, Teacher, export_labels
from .queue import Reason, ReviewItem, file_names_in, fold, reasons_for, review_queue

__all__ = ["Correction", "LabelsWriter", "Reason", "ReviewItem", "Teacher", "export_labels", "file_names_in", "fold",
           "reasons_for", "review_queue"]
