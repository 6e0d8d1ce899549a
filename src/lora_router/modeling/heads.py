"""Task heads with the shape of Transformers' BERT heads.

A classification head reads the pooled [CLS] output like
``BertForSequenceClassification``; an extraction head reads every token like
``BertForTokenClassification``. Both are ``dropout -> classifier``, saved as
``classifier.weight`` / ``classifier.bias``, so merging an adapter and
attaching its head yields a standard Transformers model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import SPAN_EXTRACTION, TaskSpec

HEAD_FILE = "head.safetensors"


class TaskHead(nn.Module):
    def __init__(self, spec: TaskSpec, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.per_token = spec.kind == SPAN_EXTRACTION
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, spec.num_outputs)

    def forward(self, encoder_output) -> torch.Tensor:
        hidden = encoder_output.last_hidden_state if self.per_token else encoder_output.pooler_output
        return self.classifier(self.dropout(hidden))

    def save(self, folder: str | Path) -> None:
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(Path(folder) / HEAD_FILE))

    def load(self, folder: str | Path) -> TaskHead:
        self.load_state_dict(load_file(str(Path(folder) / HEAD_FILE)))
        return self


def init_head(spec: TaskSpec, config, seed: int) -> TaskHead:
    """A new head initialised like Transformers does (normal(0, initializer_range))."""
    gen = torch.Generator().manual_seed(seed)
    head = TaskHead(spec, config.hidden_size, config.hidden_dropout_prob)
    with torch.no_grad():
        head.classifier.weight.normal_(0.0, config.initializer_range, generator=gen)
        head.classifier.bias.zero_()
    return head
