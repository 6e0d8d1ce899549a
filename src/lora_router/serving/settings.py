"""How the service serves (``ServeSettings``, a dataclass that checks itself); what it serves is a ``ModelSource``.

Both travel as JSON (to uvicorn workers and Ray replicas), so they hold only
plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import JsonSettings
from ..errors import ConfigError

API_KEY_ENV = "LORA_ROUTER_API_KEY"
LOG_FORMATS = ("text", "json")


@dataclass
class ServeSettings(JsonSettings):
    """Limits, batching and security of the service (``lora-router serve --help`` has the same names)."""

    max_batch_tokens: int = field(
        default=8192, metadata={"help": "Padded tokens (rows x longest) in one forward pass."})
    max_batch_requests: int = field(
        default=32, metadata={"help": "Questions in one forward pass; 1 turns dynamic batching off."})
    max_wait_ms: float = field(
        default=2.0, metadata={"help": "How long a batch waits for more questions while others are in flight."})
    max_concurrent_requests: int = field(
        default=512, metadata={"help": "Requests in flight before new ones get 429 with Retry-After."})
    max_body_bytes: int = field(default=1 << 20, metadata={"help": "Largest request body in bytes (413 above)."})
    max_question_chars: int = field(default=10_000, metadata={
        "help": "Longest question accepted (413 above); longer than the model takes is cut with a warning."})
    max_client_batch: int = field(default=64, metadata={"help": "Questions (or inputs) in one request; more is 413."})
    inference_threads: int = field(default=1, metadata={"help": "Threads that run forward passes."})
    api_key: str | None = field(
        default=None, metadata={"help": "Require Authorization: Bearer KEY on every endpoint but /health. On the "
                                        "command line `ps` shows it: prefer the variable or --api-key-file."})
    api_key_file: str | None = field(default=None, metadata={
        "help": "Read the key from this file (its first line): nothing shows it, and workers read it there too."})
    cors_origins: list[str] = field(default_factory=list, metadata={
        "help": "Allow browser calls from this origin (repeatable); no CORS by default."})
    log_format: str = field(default="text", metadata={"help": "Access and error logs as text or JSON lines."})
    retry_after_s: int = field(default=1, metadata={"help": "Retry-After of a 429, in seconds."})
    otel: bool = field(default=False, metadata={
        "help": "Trace requests and chain steps with OpenTelemetry, exported over OTLP/HTTP as the OTEL_* "
                "environment variables say (the otel extra)."})

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_batch_requests", "max_concurrent_requests", "max_body_bytes",
                     "max_question_chars", "max_client_batch", "inference_threads", "retry_after_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        if not isinstance(self.max_wait_ms, (int, float)) or not 0 <= self.max_wait_ms <= 1000:
            raise ConfigError(f"max_wait_ms must be between 0 and 1000, got {self.max_wait_ms!r}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key is empty; give a key or leave it unset")
        self._file_key = None  # not a field: the key read from a file never travels in the settings' JSON
        if self.api_key_file is not None:
            if self.api_key is not None:
                raise ConfigError("give the key once: --api-key (or LORA_ROUTER_API_KEY) or --api-key-file")
            self.api_key_file = str(Path(self.api_key_file).expanduser())
            try:
                self._file_key = Path(self.api_key_file).read_text("utf-8").splitlines()[0].strip()
            except (OSError, UnicodeDecodeError, IndexError) as exc:
                raise ConfigError(f"cannot read the key from {self.api_key_file} ({exc or 'empty file'})") from None
            if not self._file_key:
                raise ConfigError(f"{self.api_key_file} holds no key on its first line")
        if not isinstance(self.otel, bool):
            raise ConfigError(f"otel must be true or false, got {self.otel!r}")
        self.cors_origins = list(self.cors_origins)

    def key(self) -> str | None:
        """The key requests must bear, from ``api_key`` or ``api_key_file``; None: no key needed."""
        return self.api_key or self._file_key

