"""The base encoder: load bert-base-chinese (hub id or folder), or write a random one.

``init_base`` writes a randomly initialised BERT in Hugging Face format with
the real bert-base-chinese tokenizer, for tests, demos and benchmarks on a
machine that cannot download the real weights. Its config carries
``lora_router_random_init: true`` and every load of it warns once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import warnings
from importlib import resources
from pathlib import Path

from ..errors import BaseModelNotFoundError, ConfigError, require

logger = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "bert-base-chinese"
RANDOM_MARK = "lora_router_random_init"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json")
SIZES = {
    # 2 layers, hidden 128: seconds to train on 2 cores; the same vocabulary. (Hidden 64
    # could not even overfit eight file-name examples with LoRA on a random base.)
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256},
    "base": {},  # exactly bert-base-chinese's config
}
_warned: set[str] = set()


class RandomBaseWarning(UserWarning):
    """The base model is random: its predictions mean nothing."""


def tokenizer_files_dir() -> Path:
    """The bert-base-chinese tokenizer files shipped with lora-router."""
    return Path(str(resources.files("lora_router.modeling") / "bert_base_chinese"))


def init_base(folder: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random BERT with bert-base-chinese's tokenizer into ``folder``."""
    if size not in SIZES:
        raise ConfigError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")
    torch = require("torch")
    transformers = require("transformers")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} is not empty; give a new folder for the base model")
    src = tokenizer_files_dir()
    config_dict = json.loads((src / "config.json").read_text("utf-8"))
    config_dict.update(SIZES[size])
    config_dict[RANDOM_MARK] = True
    config_dict["architectures"] = ["BertModel"]
    config = transformers.BertConfig.from_dict(config_dict)
    torch.manual_seed(seed)
    model = transformers.BertModel(config)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(src / name, tmp / name)
    if folder.exists():
        folder.rmdir()
    tmp.rename(folder)
    return folder


def is_random(config) -> bool:
    return bool(getattr(config, RANDOM_MARK, False))


def warn_if_random(name: str, config) -> None:
    """Warn once per base that a random base gives meaningless predictions."""
    if is_random(config) and name not in _warned:
        _warned.add(name)
        warnings.warn(
            f"base model {name} is randomly initialised (lora-router init-base): "
            "its predictions mean nothing; use bert-base-chinese for real answers",
            RandomBaseWarning,
            stacklevel=3,
        )


def load_base(name_or_path: str = DEFAULT_BASE_MODEL):
    """The base ``BertModel`` and its fast tokenizer (a ``tokenizers.Tokenizer``).

    A folder is read as it is; a hub id is taken from the Hugging Face cache,
    or downloaded when the hub can be reached. Without either, a two-line
    error names the fix at once instead of after minutes of retries.
    """
    transformers = require("transformers")
    name = str(name_or_path)
    local = Path(name).expanduser().is_dir()
    if local:
        name = str(Path(name).expanduser())
    cached = not local and _in_hf_cache(name)
    if not local and not cached and not _hub_reachable():
        raise _not_found(name)
    kwargs = {"local_files_only": True} if cached else {}
    try:
        model = transformers.BertModel.from_pretrained(name, use_safetensors=_has_safetensors(name), **kwargs)
        tokenizer = transformers.AutoTokenizer.from_pretrained(name, use_fast=True, **kwargs)
    except (OSError, ValueError) as exc:
        logger.debug("loading %s failed: %s", name, exc)
        raise _not_found(name) from None
    model.eval()
    warn_if_random(name, model.config)
    return model, tokenizer.backend_tokenizer


def _not_found(name: str) -> BaseModelNotFoundError:
    return BaseModelNotFoundError(
        f"cannot load base model {name!r}: not a model folder, not in the Hugging Face cache, "
        "and the hub cannot be reached.\n"
        f"fix: download it once (huggingface-cli download {name}) or pass a folder with "
        "--base-model DIR (lora-router init-base DIR makes a random one for tests)"
    )


def _in_hf_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # an invalid repo id is simply not cached
        return False


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers; honours HF_HUB_OFFLINE and HF_ENDPOINT."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _has_safetensors(name: str) -> bool | None:
    """Prefer safetensors; a local folder without them falls back to what it has."""
    path = Path(name)
    if path.is_dir():
        return True if any(path.glob("*.safetensors")) else None
    return None


def fingerprint(model) -> str:
    """A short hash of the base's config and weights, to refuse adapters trained on another base.

    Hashes every tensor's name and shape and a strided sample of its values:
    fast on a 400 MB model, yet any retrained or different base differs.
    """
    h = hashlib.sha256()
    cfg = model.config
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        h.update(f"{key}={getattr(cfg, key, None)};".encode())
    for name, tensor in sorted(model.state_dict().items()):
        if name.endswith("position_ids") or "lora_" in name:
            continue
        flat = tensor.detach().reshape(-1).float()
        step = max(1, flat.numel() // 1024)
        h.update(f"{name}:{tuple(tensor.shape)};".encode())
        h.update(flat[::step].contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
