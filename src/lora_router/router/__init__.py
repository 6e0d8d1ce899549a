"""The router: one loaded base + all adapters; set_adapter; task heads; the chain.

``chain`` is torch-free (the ONNX runtime uses it too); ``Router`` imports
torch when it is first used.
"""

from .chain import DEFAULT_CHAIN, Chain, run_chain

__all__ = ["DEFAULT_CHAIN", "Chain", "Router", "PeftLoraInference", "run_chain"]


def __getattr__(name: str):
    if name == "Router":
        from .router import Router

        return Router
    if name == "PeftLoraInference":
        from .legacy import PeftLoraInference

        return PeftLoraInference
    raise AttributeError(name)
