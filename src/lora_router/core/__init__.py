"""The backend-neutral core: the chain as data and the predictor both backends share.

One core, two backends, one service: ``router.Router`` (PyTorch + PEFT) and
``runtime.OnnxRouter`` (onnxruntime) subclass ``TaskPredictor`` and only give
logits; ``serving`` answers HTTP requests through any ``TaskPredictor``.
Nothing here imports torch or onnxruntime.
"""

from .chain import DEFAULT_CHAIN, ROUTES, Chain, Step, run_chain
from .predictor import BATCH_SIZE, TaskPredictor

__all__ = ["BATCH_SIZE", "DEFAULT_CHAIN", "ROUTES", "Chain", "Step", "TaskPredictor", "run_chain"]
