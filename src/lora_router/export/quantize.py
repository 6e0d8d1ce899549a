"""Dynamic int8 with Optimum's ORTQuantizer, configured for the CPU it runs on.

Quantise the plain export: Optimum's O2-optimised graph fails to quantise on
these versions ("Unable to find data type for weight_name ...", docs/performance.md).
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigError

CPU_TARGETS = ("avx512_vnni", "avx512", "avx2", "arm64")


def cpu_target() -> str:
    """The AutoQuantizationConfig that fits this CPU: avx512_vnni, avx512, avx2 or arm64."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # not Linux: AVX2 is the safe x86-64 choice
        return "avx2"
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), ()))
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512"
    return "avx2"


def quantization_config(target: str, *, exclude: Iterable[str] = (), per_channel: bool = False):
    """Optimum's dynamic quantization config for ``target`` (``cpu_target()`` for this CPU)."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    if target not in CPU_TARGETS:
        raise ConfigError(f"unknown quantization target {target!r}; valid: {', '.join(CPU_TARGETS)}")
    return getattr(AutoQuantizationConfig, target)(
        is_static=False, per_channel=per_channel, nodes_to_exclude=list(exclude) or None
    )


def quantize_folder(folder: Path, config) -> None:
    """``folder/model.onnx`` -> ``folder/model_quantized.onnx`` (and Optimum's ort_config.json)."""
    from optimum.onnxruntime import ORTQuantizer

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(onnxruntime|optimum)\.")
        ORTQuantizer.from_pretrained(folder, file_name="model.onnx").quantize(config, folder, file_suffix="quantized")
