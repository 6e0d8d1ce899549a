"""``python -m lora_router`` runs the same CLI as the ``lora-router`` command."""

from .cli import run

run()
