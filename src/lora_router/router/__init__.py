"""The PyTorch backend: one loaded base + all adapters; set_adapter; task heads.

The chain and the predictor it shares with the ONNX runtime live in
``lora_router.core`` (re-exported here); ``Router`` imports torch when it is
first used.
"""

from ..core.chain import DEFAULT_CHAIN, Chain, run_chain

__all__ = ["DEFAULT_CHAIN", "Chain", "Router", "PeftLoraInference", "run_chain"]


def __getattr__(name: str):
    if name == "Router":
        from .router import Router

        return Router
    if name == "PeftLoraInference":
        from .legacy import PeftLoraInference

        return PeftLoraInference
    raise AttributeError(name)
