"""How the service serves (``ServeSettings``, a dataclass that checks itself); what it serves is a ``ModelSource``.

Both travel as JSON (to uvicorn workers and Ray replicas), so they hold only
plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..capture.writer import DEFAULT_MAX_MB, MIN_MAX_MB
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
    capture: str | None = field(default=None, metadata={
        "help": "Keep every answered question with its decision trace in this folder, for review and feedback "
                "(POST /v1/feedback). What users type is personal data: see docs/serve.md. Off by default."})
    capture_max_mb: float = field(default=DEFAULT_MAX_MB, metadata={
        "help": "Largest the capture folder grows to, in MiB; the oldest answers are dropped first."})
    shadow: str | None = field(default=None, metadata={
        "help": "Also run this candidate export on answered questions, after they are answered: answers stay "
                "the served export's; /metrics counts where the candidate agrees and disagrees, and --capture keeps "
                "its trace beside each answer. See docs/serve.md."})
    shadow_share: float = field(default=1.0, metadata={
        "help": "Share of answered questions the --shadow candidate runs on (1.0: every one; 0.1: one in ten)."})
    shadow_queue: int = field(default=256, metadata={
        "help": "Questions waiting for the --shadow candidate; more are not shadowed (counted), never delayed."})
    reload_unchecked: bool = field(default=False, metadata={
        "help": "Let SIGHUP, /admin/reload and /admin/rollback load an export written without the parity gate "
                "(export --no-parity), logged as a warning naming it; one whose parity figures fail is still "
                "refused. Off by default: such an export was never checked against PyTorch."})
    promote_compare: str | None = field(default=None, metadata={
        "help": "Hold a promotion (SIGHUP, /admin/reload) to eval --compare's gate: the new export is compared "
                "with the one in service on this chain file ('bundled': the bundled chain set) and refused (409, "
                "the flips named) when significantly worse. A rollback is not compared."})
    # Limits against slow, large and abandoned requests (serving/limits.py, serving/http_limits.py).
    max_queued_questions: int = field(default=1024, metadata={
        "help": "Questions waiting or being answered before a request gets 429, with Retry-After from the "
                "expected wait."})
    request_timeout_s: float = field(default=60.0, metadata={
        "help": "A request not answered in this many seconds gets 504 (with its request id) and its work is "
                "stopped; 0: no limit."})
    body_timeout_s: float = field(default=10.0, metadata={
        "help": "Longest wait for the next piece of a request body (408 after); the whole body has 30 s."})
    header_timeout_s: float = field(default=10.0, metadata={
        "help": "Time a client has to send a request's line and headers (408 after)."})
    max_header_bytes: int = field(default=16384, metadata={
        "help": "Largest request line and headers, in bytes (431 above)."})
    allowed_hosts: list[str] = field(default_factory=list, metadata={
        "help": "Answer only requests whose Host header is this name (repeatable; *.example.com matches its "
                "subdomains); any host by default. 400 for another."})
    otel: bool = field(default=False, metadata={
        "help": "Trace requests and chain steps with OpenTelemetry, exported over OTLP/HTTP as the OTEL_* "
                "environment variables say (the otel extra)."})

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_batch_requests", "max_concurrent_requests", "max_body_bytes",
                     "max_question_chars", "max_client_batch", "inference_threads", "retry_after_s",
                     "max_queued_questions", "max_header_bytes", "shadow_queue"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        if not isinstance(self.max_wait_ms, (int, float)) or not 0 <= self.max_wait_ms <= 1000:
            raise ConfigError(f"max_wait_ms must be between 0 and 1000, got {self.max_wait_ms!r}")
        for name, least in (("request_timeout_s", ">= 0 (0: no limit)"), ("body_timeout_s", "> 0"),
                            ("header_timeout_s", "> 0")):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (
                    value == 0 and name != "request_timeout_s"):
                raise ConfigError(f"{name} must be a number of seconds {least}, got {value!r}")
        if self.max_queued_questions < self.max_client_batch:
            raise ConfigError(f"max_queued_questions ({self.max_queued_questions}) must be at least "
                              f"max_client_batch ({self.max_client_batch}), or a full request could never be queued")
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
        self.capture = _folder_or_none(self.capture, "capture", "the folder to capture into")
        if (not isinstance(self.capture_max_mb, (int, float)) or isinstance(self.capture_max_mb, bool)
                or self.capture_max_mb < MIN_MAX_MB):
            raise ConfigError(f"capture_max_mb must be a number >= {MIN_MAX_MB}, got {self.capture_max_mb!r}")
        self.shadow = _folder_or_none(self.shadow, "shadow", "the candidate export's folder")
        if (not isinstance(self.shadow_share, (int, float)) or isinstance(self.shadow_share, bool)
                or not 0 < self.shadow_share <= 1):
            raise ConfigError(f"shadow_share must be a number above 0 and at most 1, got {self.shadow_share!r}")
        if self.promote_compare is not None and self.promote_compare != "bundled":
            path = Path(self.promote_compare).expanduser()
            if not path.is_file():
                raise ConfigError(f"promote_compare: {path} is not a file; give a chain test file (the format of "
                                  "lora-router eval --chain FILE) or 'bundled'")
            self.promote_compare = str(path.resolve())
        for name in ("otel", "reload_unchecked"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        self.cors_origins = list(self.cors_origins)
        self.allowed_hosts = [h.strip().lower() for h in self.allowed_hosts]
        if any(not h or "/" in h or " " in h for h in self.allowed_hosts):
            raise ConfigError(f"allowed_hosts holds a name that is not a host: {self.allowed_hosts!r}")

    def key(self) -> str | None:
        """The key requests must bear, from ``api_key`` or ``api_key_file``; None: no key needed."""
        return self.api_key or self._file_key



def _folder_or_none(value, name: str, what: str) -> str | None:
    """A folder setting, ``~`` expanded; None stays None; an empty one is refused naming ``what`` to give."""
    if value is None:
        return None
    if not str(value).strip():
        raise ConfigError(f"{name} is empty; give {what}, or leave it unset")
    return str(Path(value).expanduser())
