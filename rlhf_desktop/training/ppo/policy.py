"""The policy, its reference and its value head on one base model in memory (issue 5, item 1).

The policy is a LoRA adapter named "default" on the base; the reference is the same base with the
adapters disabled; the value function is a scalar head on the policy's last hidden state, so one pass
through the decoder gives both logits and values. With full fine-tuning the reference is a frozen copy.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from rlhf_desktop.core.errors import ModelLoadError
from rlhf_desktop.training.ppo.config import PPORunConfig

POLICY_ADAPTER = "default"  # PEFT saves the "default" adapter at the folder's root, loadable as-is
REFERENCE_ADAPTER = "reference"  # the starting SFT adapter, frozen, when the run starts from one


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Left padding: positions count only real tokens, cumsum(mask) - 1 (pads clamp to 0). (B, T) -> (B, T)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def load_causal_lm(folder: str | Path, dtype: torch.dtype):
    """A causal LM from a local Hugging Face folder (safetensors only), errors naming the folder."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True,
                                                    use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load the model: {str(exc).splitlines()[0]}", where=str(folder),
                             hint="choose a complete Hugging Face model folder") from None


class PolicyValueModel:
    """A causal LM (LoRA-wrapped unless full fine-tuning), its value head, and the reference switch."""

    def __init__(self, lm: nn.Module, value_head: nn.Linear, ref_lm: nn.Module | None, is_peft: bool,
                 has_reference_adapter: bool = False):
        self.lm = lm  # PeftModel or a plain causal LM
        self.value_head = value_head
        self.ref_lm = ref_lm  # full fine-tuning only
        self.is_peft = is_peft
        self.has_reference_adapter = has_reference_adapter
        causal = lm.get_base_model() if is_peft else lm
        self.decoder = causal.get_decoder()
        self.lm_head = causal.get_output_embeddings()
        self.config = causal.config

    @property
    def device(self) -> torch.device:
        return self.value_head.weight.device

    # -- parameters -------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        named = [(f"lm.{n}", p) for n, p in self.lm.named_parameters() if p.requires_grad]
        return named + [(f"value_head.{n}", p) for n, p in self.value_head.named_parameters()]

    def trainable_names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.trainable_parameters())

    def train(self, mode: bool) -> None:
        self.lm.train(mode)

    # -- forward passes ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def reference(self) -> Iterator[tuple[nn.Module, nn.Module]]:
        """Yield (decoder, lm_head) of the reference: adapters disabled, or the frozen copy."""
        if self.ref_lm is not None:
            yield self.ref_lm.get_decoder(), self.ref_lm.get_output_embeddings()
        elif self.has_reference_adapter:
            with self.adapter(REFERENCE_ADAPTER):
                yield self.decoder, self.lm_head
        elif self.is_peft:
            with self.lm.disable_adapter():
                yield self.decoder, self.lm_head
        else:
            raise RuntimeError("a fully fine-tuned policy needs its frozen reference copy (ref_lm)")

    @contextlib.contextmanager
    def adapter(self, name: str) -> Iterator[None]:
        """Run with another (frozen) adapter active, always switching back to the policy's (PEFT pitfall:
        set_adapter moves requires_grad to the adapter it activates)."""
        self.lm.set_adapter(name, inference_mode=True)
        try:
            yield
        finally:
            self.lm.set_adapter(POLICY_ADAPTER)

    def hidden(self, decoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor, **kwargs) -> torch.Tensor:
        """Last hidden states (B, T, H) of a full left-padded sequence."""
        out = decoder(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                      use_cache=False, **kwargs)
        return out.last_hidden_state

    def values(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scalar value per position: (B, T, H) -> (B, T), computed in float32."""
        return self.value_head(hidden.float()).squeeze(-1)

    def response_outputs(self, ids: torch.Tensor, mask: torch.Tensor, prompt_len: int, temperature: float,
                         reference: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Temperature-scaled logits (B, R, V) for the response tokens and values (B, R) (None for the reference).

        The LM head runs on the response positions only: the prompt's logits are never needed, and
        the vocabulary projection is the largest matmul of a small model.
        """
        ctx = self.reference() if reference else contextlib.nullcontext((self.decoder, self.lm_head))
        with ctx as (decoder, lm_head):
            hidden = self.hidden(decoder, ids, mask)[:, prompt_len - 1:-1]  # (B, R, H): predicts tokens P..P+R-1
            logits = lm_head(hidden).float() / temperature
        return logits, (None if reference else self.values(hidden))


def build_policy(base_folder: Path, start_adapter: Path | None, config: PPORunConfig, device: str,
                 dtype: torch.dtype) -> PolicyValueModel:
    """The base with the policy adapter, the reference and a fresh value head.

    LoRA from an SFT checkpoint: the policy trains a copy of that adapter (same shape) and the same
    weights, frozen, are the reference adapter, so every adapter stays on the one base (training/common.py).
    Full fine-tuning: the SFT adapter is merged and a frozen copy of the model is the reference.
    """
    lm = load_causal_lm(base_folder, dtype)
    lm.config.use_cache = False
    lm.requires_grad_(False)
    ref_lm, has_ref_adapter = None, False
    if config.full_finetune:
        if start_adapter is not None:
            from peft import PeftModel

            lm = PeftModel.from_pretrained(lm, str(_adapter_folder(start_adapter))).merge_and_unload()
        ref_lm = copy.deepcopy(lm).eval().requires_grad_(False)
        lm.requires_grad_(True)
    elif start_adapter is None:
        lm = _with_lora(lm, _lora_config(config, None))
    else:
        lm = _with_lora(lm, _lora_config(config, _adapter_folder(start_adapter)))
        _load_adapter(lm, start_adapter, POLICY_ADAPTER)
        lm.add_adapter(REFERENCE_ADAPTER, _lora_config(config, start_adapter, dropout=0.0))
        _load_adapter(lm, start_adapter, REFERENCE_ADAPTER)
        has_ref_adapter = True
        lm.set_adapter(POLICY_ADAPTER)  # also leaves only the policy adapter trainable
    lm.to(device).eval()
    hidden_size = lm.config.hidden_size
    value_head = nn.Linear(hidden_size, 1).to(device=device, dtype=torch.float32)
    nn.init.normal_(value_head.weight, std=1.0 / (hidden_size + 1) ** 0.5)
    nn.init.zeros_(value_head.bias)
    return PolicyValueModel(lm, value_head, ref_lm, is_peft=not config.full_finetune,
                            has_reference_adapter=has_ref_adapter)


def _adapter_folder(folder: Path) -> Path:
    if not (Path(folder) / "adapter_config.json").is_file():
        raise ModelLoadError("the starting checkpoint has no LoRA adapter (adapter_config.json)", where=str(folder),
                             hint="start from an SFT checkpoint folder or from the base model")
    return Path(folder)


def _lora_config(config: PPORunConfig, parent: Path | None, dropout: float | None = None):
    """Our LoRA settings, or the parent adapter's shape (rank, alpha, targets) when continuing one."""
    import json

    from peft import LoraConfig

    r, alpha, targets = config.lora_r, config.lora_alpha, list(config.lora_target_modules)
    if parent is not None:
        shape = json.loads((parent / "adapter_config.json").read_text(encoding="utf-8"))
        r, alpha, targets = int(shape["r"]), int(shape["lora_alpha"]), shape["target_modules"]
        targets = targets if isinstance(targets, str) else sorted(targets)
    return LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, bias="none", task_type="CAUSAL_LM",
                      lora_dropout=config.lora_dropout if dropout is None else dropout)


def _with_lora(lm: nn.Module, lora) -> nn.Module:
    from peft import get_peft_model

    try:
        return get_peft_model(lm, lora, adapter_name=POLICY_ADAPTER)
    except ValueError as exc:
        raise ModelLoadError(f"cannot add the LoRA adapter: {exc}", where="lora_target_modules",
                             hint="name modules that exist in this model, e.g. q_proj,v_proj") from None


def _load_adapter(lm: nn.Module, folder: Path, name: str) -> None:
    """Copy a saved LoRA adapter's weights into adapter `name` (the head of a reward adapter is ignored)."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    weights = {k: v for k, v in load_peft_weights(str(folder), device="cpu").items() if "lora_" in k}
    result = set_peft_model_state_dict(lm, weights, adapter_name=name)
    missing = [k for k in result.missing_keys if "lora_" in k and f".{name}." in k]
    if missing:
        raise ModelLoadError(f"the adapter does not fit this model ({len(missing)} LoRA weights missing, "
                             f"e.g. {missing[0]})", where=str(folder), hint="use the adapter's own base model")
