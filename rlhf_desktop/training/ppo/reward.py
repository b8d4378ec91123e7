"""Reward scorers: the reward model's LoRA adapter on the policy's own base, a separate reward model, or a
Python function (tests, benchmarks).

A reward model scores what it was trained on (training/common.py): the chat-templated conversation
[user: prompt, assistant: response], read by the `score` head at the last non-pad token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from rlhf_desktop.core.errors import ModelLoadError
from rlhf_desktop.training.ppo.policy import PolicyValueModel, position_ids_from_mask
from rlhf_desktop.training.ppo.rollout import left_pad

REWARD_ADAPTER = "reward"
RewardFn = Callable[[list[str], list[str]], list[float]]


def conversation_ids(tokenizer, prompts: list[str], responses: list[str]) -> list[list[int]]:
    """Token ids of each (prompt, response) exactly as the reward-model stage encodes its pairs."""
    from rlhf_desktop.training.reward import encode_pair

    return [encode_pair(tokenizer, p, r) for p, r in zip(prompts, responses)]


def score_conversations(backbone: nn.Module, head: nn.Module, tokenizer, prompts: list[str],
                        responses: list[str], device: torch.device) -> torch.Tensor:
    """(B,) float32 scores: the head on the hidden state of each row's last non-pad token."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = conversation_ids(tokenizer, prompts, responses)
    ids, mask = left_pad(rows, pad, device)
    width = ids.shape[1]
    last = []
    for row in rows:  # rightmost non-pad token, as a sequence-classification model reads it
        keep = [i for i, t in enumerate(row) if t != pad]
        last.append(width - len(row) + (keep[-1] if keep else len(row) - 1))
    hidden = backbone(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                      use_cache=False).last_hidden_state
    picked = hidden[torch.arange(len(rows), device=device), torch.tensor(last, device=device)]  # (B, H)
    return head(picked.to(head.weight.dtype))[:, 0].float()


class FunctionReward:
    """Programmatic rewards: fn(prompts, responses) -> one float per response."""

    def __init__(self, fn: RewardFn):
        self.fn = fn

    def score(self, prompts: list[str], responses: list[str], device: torch.device) -> torch.Tensor:
        values = [float(v) for v in self.fn(list(prompts), list(responses))]
        if len(values) != len(responses):
            raise ValueError(f"reward_fn returned {len(values)} scores for {len(responses)} responses")
        return torch.tensor(values, dtype=torch.float32, device=device)


class AdapterReward:
    """The reward model's LoRA adapter and score head, living on the policy's base weights."""

    def __init__(self, policy: PolicyValueModel, folder: Path, tokenizer):
        from peft import LoraConfig
        from peft.utils import load_peft_weights

        from rlhf_desktop.training.ppo.policy import _load_adapter

        self.policy, self.tokenizer = policy, tokenizer
        lora = LoraConfig.from_pretrained(str(folder))
        lora.modules_to_save = None  # the score head lives here, outside the causal LM
        lora.task_type, lora.inference_mode, lora.lora_dropout = "CAUSAL_LM", True, 0.0
        head = [v for k, v in load_peft_weights(str(folder), device="cpu").items() if k.endswith("score.weight")]
        if not head:
            raise ModelLoadError("the reward adapter has no score head (score.weight)", where=str(folder),
                                 hint="choose a checkpoint of a reward-model run")
        policy.lm.add_adapter(REWARD_ADAPTER, lora)
        _load_adapter(policy.lm, folder, REWARD_ADAPTER)
        policy.lm.set_adapter("default")  # the policy stays the active, and only trainable, adapter
        self.head = nn.Linear(head[0].shape[1], head[0].shape[0], bias=False)
        self.head.weight.data.copy_(head[0].float())
        self.head.to(policy.device).requires_grad_(False)

    def score(self, prompts: list[str], responses: list[str], device: torch.device) -> torch.Tensor:
        with self.policy.adapter(REWARD_ADAPTER):
            return score_conversations(self.policy.decoder, self.head, self.tokenizer, prompts, responses, device)


class SeparateReward:
    """A reward model with its own weights (another base, fully fine-tuned, or a fully fine-tuned policy)."""

    def __init__(self, model: nn.Module, tokenizer, device: str):
        self.model = model.to(device).eval().requires_grad_(False)
        self.backbone = model.base_model
        self.head = getattr(model, "score", None)
        if self.head is None:
            raise ModelLoadError("the reward model has no `score` head", where=type(model).__name__)
        self.tokenizer = tokenizer

    def score(self, prompts: list[str], responses: list[str], device: torch.device) -> torch.Tensor:
        return score_conversations(self.backbone, self.head, self.tokenizer, prompts, responses, device)


def load_reward(folder: str | Path, policy: PolicyValueModel, policy_base: Path, tokenizer, device: str,
                dtype: torch.dtype):
    """The reward model of a reward-model checkpoint, on the policy's base when it can share it.

    Shared when the checkpoint is a LoRA adapter whose base is the policy's base folder and the policy
    is a LoRA adapter too (full fine-tuning changes the base weights the reward adapter was trained on).
    """
    from rlhf_desktop.training.common import read_metadata

    folder = Path(folder)
    meta = read_metadata(folder)
    is_adapter = (folder / "adapter_config.json").is_file()
    if not is_adapter and not (folder / "config.json").is_file():
        raise ModelLoadError("not a reward-model checkpoint (no adapter_config.json or config.json)",
                             where=str(folder), hint="choose a checkpoint of a reward-model run")
    if meta.get("task") not in (None, "reward"):
        raise ModelLoadError(f"a {meta.get('task')!r} checkpoint, not a reward model", where=str(folder),
                             hint="choose a checkpoint of a reward-model run")
    rm_base = _reward_base(folder, meta) if is_adapter else None
    if is_adapter and policy.is_peft and rm_base.resolve() == Path(policy_base).resolve():
        return AdapterReward(policy, folder, tokenizer)
    return _separate_reward(folder, rm_base, device, dtype)


def _reward_base(folder: Path, meta: dict) -> Path:
    import json

    from rlhf_desktop.training.checkpoints import resolve_base

    base = meta.get("base_model")
    if not base:
        base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError("the reward adapter does not name its base model", where=str(folder),
                             hint="its rlhf_desktop.json needs base_model")
    return resolve_base(base)


def _separate_reward(folder: Path, rm_base: Path | None, device: str, dtype: torch.dtype) -> SeparateReward:
    from transformers import AutoModelForSequenceClassification

    from rlhf_desktop.modeling.loading import load_tokenizer

    source = rm_base if rm_base is not None else folder
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(source), num_labels=1, dtype=dtype,
                                                                   local_files_only=True, use_safetensors=True)
        if rm_base is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load the reward model: {str(exc).splitlines()[0]}", where=str(folder)) from None
    has_tokenizer = (folder / "tokenizer_config.json").is_file()
    return SeparateReward(model, load_tokenizer(folder if has_tokenizer else source), device)
