"""The backend-neutral core: the ``Backend`` protocol, ``PredictorOptions``, ``TaskPredictor``, results, the chain.

One core, two backends by composition, one service: a backend
(``backends.torch_peft``, ``backends.onnx``) only gives logits;
``TaskPredictor(backend, options)`` turns them into results and runs the
chain; ``serving`` answers HTTP requests through any ``TaskPredictor``.
Nothing here imports torch or onnxruntime.
"""

from .backend import Backend, MixedBackend
from .chain import DEFAULT_CHAIN, ROUTES, Chain, Step, run_chain
from .options import PredictorOptions
from .predictor import BATCH_SIZE, TaskPredictor

__all__ = ["BATCH_SIZE", "DEFAULT_CHAIN", "ROUTES", "Backend", "Chain", "MixedBackend", "PredictorOptions", "Step",
           "TaskPredictor", "run_chain"]
