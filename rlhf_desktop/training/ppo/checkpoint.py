"""PPO checkpoints: a self-describing folder that loads as a PEFT adapter and resumes a run exactly.

checkpoint-<step>/
  adapter_config.json, adapter_model.safetensors   the policy adapter (PEFT save_pretrained), or the full
                                                   model's config.json + model.safetensors when full fine-tuning
  value_head.safetensors                           the scalar value head
  trainer_state.pt                                 optimizer, scheduler, RNG states (torch, cuda, python, numpy),
                                                   step, adaptive KL coefficient (tensors and plain data only)
  tokenizer files, rlhf_desktop.json               metadata (training/common.py layout): stage "ppo", format,
                                                   task, base_model, parent_checkpoint, step, config
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rlhf_desktop.core.errors import ModelLoadError
from rlhf_desktop.training.common import METADATA_FILE as META_FILE
from rlhf_desktop.training.common import write_metadata
from rlhf_desktop.training.ppo.policy import POLICY_ADAPTER, PolicyValueModel

STATE_FILE = "trainer_state.pt"
VALUE_HEAD_FILE = "value_head.safetensors"


def capture_rng() -> dict[str, Any]:
    """Every random state a step consumes, as tensors and plain lists (loadable with weights_only=True)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(py_state), py_gauss],
        "numpy": [kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss],
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))


def save_checkpoint(folder: Path, *, policy: PolicyValueModel, tokenizer, state: dict[str, Any],
                    meta: dict[str, Any]) -> Path:
    """Write the checkpoint into a temporary folder, then move it into place (never a half-written folder)."""
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if policy.is_peft:
        policy.lm.save_pretrained(tmp, selected_adapters=[POLICY_ADAPTER])
    else:
        policy.lm.save_pretrained(tmp)
    save_file({k: v.detach().contiguous().cpu() for k, v in policy.value_head.state_dict().items()},
              str(tmp / VALUE_HEAD_FILE))
    torch.save(state, tmp / STATE_FILE)
    tokenizer.save_pretrained(tmp)
    write_metadata(tmp, **meta)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def checkpoint_meta(*, step: int, config, base_model: Path, start_adapter: Path | None, full: bool) -> dict:
    """rlhf_desktop.json's fields, in the layout every stage uses (training/common.py)."""
    return {
        "stage": "ppo",
        "format": "full" if full else "lora",
        "task": "causal",
        "base_model": str(base_model),
        "parent_checkpoint": str(start_adapter) if start_adapter else None,
        "step": step,
        "config": dataclasses.asdict(config),
        "world_size": 1,
    }


def read_checkpoint_meta(folder: Path) -> dict[str, Any]:
    path = folder / META_FILE
    if not (folder / STATE_FILE).is_file() or not path.is_file():
        raise ModelLoadError("not a PPO checkpoint (no trainer_state.pt or rlhf_desktop.json)", where=str(folder),
                             hint="resume from a checkpoint-<step> folder of a PPO run")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("stage") != "ppo":
        raise ModelLoadError(f"a {meta.get('stage')!r} checkpoint, not a PPO one", where=str(folder))
    return meta


def load_weights(folder: Path, policy: PolicyValueModel) -> None:
    """Load the policy (adapter or full weights) and the value head saved by `save_checkpoint`."""
    if policy.is_peft:
        from peft import set_peft_model_state_dict

        weights = load_file(str(folder / "adapter_model.safetensors"), device=str(policy.device))
        result = set_peft_model_state_dict(policy.lm, weights, adapter_name=POLICY_ADAPTER)
        missing = [k for k in result.missing_keys if f".{POLICY_ADAPTER}." in k]
        if missing:
            raise ModelLoadError(f"the checkpoint's adapter does not fit ({len(missing)} missing weights)",
                                 where=str(folder), hint="resume with the same LoRA settings and base model")
    else:
        weights: dict[str, torch.Tensor] = {}
        for file in sorted(folder.glob("*.safetensors")):
            if file.name != VALUE_HEAD_FILE:
                weights.update(load_file(str(file), device=str(policy.device)))
        result = policy.lm.load_state_dict(weights, strict=False)
        tied = {"lm_head.weight"} if getattr(policy.config, "tie_word_embeddings", False) else set()
        missing = sorted(set(result.missing_keys) - tied)
        if missing:
            raise ModelLoadError(f"the checkpoint misses {len(missing)} weights, e.g. {missing[0]}", where=str(folder),
                                 hint="resume with the same base model")
    policy.value_head.load_state_dict(load_file(str(folder / VALUE_HEAD_FILE), device=str(policy.device)))


def load_state(folder: Path) -> dict[str, Any]:
    return torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
