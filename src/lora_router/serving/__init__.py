"""The HTTP service: one app over a ``TaskPredictor``, and the hosts that run it.

``app`` validates requests and answers them (FastAPI), ``batcher`` gathers
concurrent requests into batches per chain step, ``service`` runs the chain
over the batcher and swaps models on reload, ``metrics`` counts it all for
Prometheus. Two hosts run the same app: ``host`` on uvicorn (one machine)
and ``ray`` as Ray Serve replicas across a cluster, several exports
multiplexed (``ray_proxy`` replays a request whose replica died). Like the
runtime, nothing here imports torch unless the service is asked to serve a
hub. Install with ``pip install "lora-router[serve]"`` (or ``[ray]``).
"""

from ..backends.source import ModelSource
from .settings import ServeSettings

__all__ = ["ModelSource", "ServeSettings", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
