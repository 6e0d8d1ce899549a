"""The HTTP service: one app over a ``TaskPredictor``, and the hosts that run it.

``app`` validates requests and answers them (FastAPI), ``batcher`` gathers
concurrent requests into batches per chain step, ``service`` runs the chain
over the batcher and swaps models on reload, ``metrics`` counts it all for
Prometheus. ``host`` runs the app on uvicorn (one machine). Like the runtime,
nothing here imports torch unless the service is asked to serve a hub.
Install with ``pip install "lora-router[serve]"``.
"""

from .settings import ModelSource, ServeSettings

__all__ = ["ModelSource", "ServeSettings", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
