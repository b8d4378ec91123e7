"""A memory estimate before a run starts: weights, LoRA, gradients, optimizer state and activations.

The figures are deliberately rough (within ~30% for decoder-only transformers): enough to warn
"this will not fit, lower the batch size" before the user waits for a model to load and crash.
Activation sizes follow Korthikanti et al. 2022 (about 34*h + 5*heads*s bytes per token and layer
in 16-bit, twice that in fp32); the logits (tokens x vocab, fp32, plus their gradient) often
dominate small models with large vocabularies.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

GIB = 2**30
RUNTIME_OVERHEAD = 600 * 2**20  # CUDA context / allocator slack / Python and torch themselves
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def count_parameters(model_path: str | Path) -> int:
    """Parameters in a model folder, read from the safetensors headers (no weights loaded)."""
    total = 0
    for file in sorted(Path(model_path).glob("*.safetensors")):
        with open(file, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
            total += count
    return total


def _shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection in one decoder layer, from an HF config."""
    h = int(cfg.get("hidden_size", 0))
    heads = int(cfg.get("num_attention_heads", 1))
    kv = int(cfg.get("num_key_value_heads", heads))
    head_dim = int(cfg.get("head_dim") or (h // max(heads, 1)))
    inter = int(cfg.get("intermediate_size", 4 * h))
    return {"q_proj": (h, heads * head_dim), "k_proj": (h, kv * head_dim), "v_proj": (h, kv * head_dim),
            "o_proj": (heads * head_dim, h), "gate_proj": (h, inter), "up_proj": (h, inter),
            "down_proj": (inter, h)}


def _lora_params(cfg: dict[str, Any], targets: list[str], r: int) -> int:
    shapes = _shapes(cfg)
    per_layer = sum(r * (shapes[t][0] + shapes[t][1]) for t in targets if t in shapes)
    return per_layer * int(cfg.get("num_hidden_layers", 0))


def _config_value(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if getattr(config, name, None) is not None:
            return getattr(config, name)
    return default


def _tokens(stage: str, config: Any) -> tuple[int, int]:
    """(sequences per forward pass, sequence length) at the configured batch size."""
    batch = int(_config_value(config, "per_device_batch_size", "batch_size", default=1))
    length = _config_value(config, "max_length", default=None)
    if length is None:
        length = int(_config_value(config, "max_prompt_length", default=256)) + int(
            _config_value(config, "response_length", default=64))
    pairs = 2 if stage in ("rm", "dpo") else 1  # chosen and rejected go through together
    return batch * pairs, int(length)


def _free_bytes(device: str) -> int:
    from rlhf_desktop.modeling.device import memory_info

    return int(memory_info(device)["free_bytes"])


def estimate_memory(stage: str, config: Any, model_path: str | Path) -> dict[str, Any]:
    """Bytes needed to train `stage` with `config` on the model folder, against the device's free memory.

    Returns {weights, lora, gradients, optimizer, activations, total, free, fits, message, device}
    (bytes, except fits: bool and message: str).
    """
    from rlhf_desktop.training.common import device_settings

    cfg = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    settings = device_settings(config)
    weight_bytes = settings.weights_dtype.itemsize
    act_bytes = 2 if settings.mixed or weight_bytes == 2 else 4
    params = count_parameters(model_path)
    h, layers = int(cfg.get("hidden_size", 0)), int(cfg.get("num_hidden_layers", 0))
    heads, vocab = int(cfg.get("num_attention_heads", 1)), int(cfg.get("vocab_size", 0))
    full = bool(getattr(config, "full_finetune", False))
    lora = 0 if full else _lora_params(cfg, list(getattr(config, "lora_target_modules", [])),
                                       int(getattr(config, "lora_r", 0)))
    trainable = params if full else lora + (h if stage == "rm" else 0)
    weights = params * weight_bytes
    if full and stage in ("dpo", "ppo"):
        weights *= 2  # a frozen reference copy; LoRA runs use the adapter-disabled base instead
    seqs, length = _tokens(stage, config)
    tokens = seqs * length
    if getattr(config, "gradient_checkpointing", False):
        per_layer = tokens * h * act_bytes + (34 * h + 5 * heads * length) * tokens * act_bytes // max(layers, 1)
    else:
        per_layer = (34 * h + 5 * heads * length) * tokens * act_bytes // 2
    logits = 0 if stage == "rm" else tokens * vocab * 4 * (3 if stage == "dpo" else 2)
    activations = per_layer * layers + logits
    gradients, optimizer = trainable * 4, trainable * 8  # fp32 grads; AdamW's two fp32 moments
    total = weights + lora * 4 + gradients + optimizer + activations + RUNTIME_OVERHEAD
    free = _free_bytes(settings.device)
    fits = total <= free
    message = (f"needs about {total / GIB:.1f} GiB on {settings.device}, {free / GIB:.1f} GiB free")
    if not fits:
        message += (": it will probably not fit. Lower per_device_batch_size (raise grad_accum to keep the "
                    "effective batch), lower max_length, turn on gradient_checkpointing, or use LoRA with a "
                    "smaller lora_r instead of full fine-tuning")
    return {"weights": weights, "lora": lora * 4, "gradients": gradients, "optimizer": optimizer,
            "activations": activations, "total": total, "free": free, "fits": fits, "message": message,
            "device": settings.device, "parameters": params, "trainable_parameters": trainable}
