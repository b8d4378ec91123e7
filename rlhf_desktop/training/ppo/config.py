"""PPORunConfig: every PPO hyperparameter with its help text, validated with the field to change named."""

from __future__ import annotations

from dataclasses import dataclass, field

from rlhf_desktop.core.config import require


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class PPORunConfig:
    """PPO on a LoRA policy (InstructGPT recipe); defaults follow TRL's PPOConfig where it has one."""

    learning_rate: float = _f(1e-5, "AdamW learning rate for the policy adapter and the value head.")
    lr_scheduler: str = _f("linear", "'linear' decays the learning rate to 0 over max_steps; 'constant' keeps it.")
    max_steps: int = _f(100, "PPO steps (one rollout batch plus its optimisation each) to run in total.")
    batch_size: int = _f(8, "Prompts per step: responses sampled and scored per rollout.")
    mini_batches: int = _f(1, "Minibatches per PPO epoch; each is one optimizer step. Must divide batch_size.")
    ppo_epochs: int = _f(4, "Passes of PPO optimisation over each rollout batch.")
    grad_accum: int = _f(1, "Micro-batches per minibatch, with gradients accumulated (less memory, same result).")
    max_grad_norm: float = _f(1.0, "Clip the gradient norm to this value before each optimizer step (0 = off).")
    response_length: int = _f(64, "Maximum new tokens per response; generation stops earlier at EOS.")
    max_prompt_length: int = _f(256, "Prompts longer than this many tokens keep only their last tokens.")
    temperature: float = _f(0.7, "Sampling temperature of the rollouts (must be > 0).")
    kl_coef: float = _f(0.05, "Weight of the per-token KL penalty against the reference (start value if adaptive).")
    kl_estimator: str = _f("k1", "KL estimator: 'k1' (log p - log q) or 'k3' (lower variance, never negative).")
    adaptive_kl: bool = _f(False, "Adapt kl_coef so the measured KL tracks target_kl (Ziegler et al. 2019).")
    target_kl: float = _f(6.0, "Target KL (summed per response) for the adaptive KL coefficient.")
    horizon: int = _f(10000, "Episodes over which the adaptive KL coefficient moves by at most 20 %.")
    gamma: float = _f(1.0, "Discount factor of the per-token rewards.")
    lam: float = _f(0.95, "GAE lambda: bias/variance trade-off of the advantages.")
    cliprange: float = _f(0.2, "PPO clip range of the policy ratio.")
    cliprange_value: float = _f(0.2, "Clip range of the value predictions around their rollout values.")
    vf_coef: float = _f(0.1, "Weight of the value loss in the total loss.")
    whiten_rewards: bool = _f(False, "Whiten the per-token rewards of each batch (keeps their mean).")
    reward_clip: float | None = _f(None, "Clip reward-model scores to [-reward_clip, reward_clip]; empty = off.")
    missing_eos_penalty: float | None = _f(
        None, "Subtract this from the score of responses that hit response_length without EOS; empty = off.")
    lora_r: int = _f(8, "LoRA rank of the policy adapter.")
    lora_alpha: int = _f(16, "LoRA alpha (scale = alpha / r).")
    lora_dropout: float = _f(0.0, "LoRA dropout during optimisation (0 keeps the first PPO ratio exactly 1).")
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "v_proj"],
        metadata={"help": "Module names that get LoRA layers, e.g. q_proj,v_proj."})
    full_finetune: bool = _f(False, "Train all policy weights instead of a LoRA adapter (needs a reference copy).")
    save_every: int = _f(50, "Write a checkpoint every this many steps (and always at the end and on stop).")
    seed: int = _f(0, "Random seed: sampling, minibatch order and prompt order all follow from it.")
    device: str = _f("auto", "'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    num_sample_rollouts: int = _f(4, "Rollouts (prompt, response, score, KL) stored with the run each step.")
    ratio_guard: float = _f(10.0, "Skip an optimizer step whose mean policy ratio exceeds this (0 = off); "
                                  "a step whose KL is NaN is always skipped.")
    leave_core_for_gui: bool = _f(False, "On the CPU use one thread fewer than the cores (the GUI sets this).")

    def validate(self) -> None:
        positive = ("learning_rate", "max_steps", "batch_size", "mini_batches", "ppo_epochs", "grad_accum",
                    "response_length", "max_prompt_length", "temperature", "horizon", "save_every", "lora_r",
                    "lora_alpha", "target_kl")
        for name in positive:
            require(getattr(self, name) > 0, name, "must be greater than 0")
        for name in ("kl_coef", "cliprange", "cliprange_value", "vf_coef", "max_grad_norm", "ratio_guard",
                     "num_sample_rollouts"):
            require(getattr(self, name) >= 0, name, "must not be negative")
        require(0.0 <= self.gamma <= 1.0, "gamma", "must be between 0 and 1")
        require(0.0 <= self.lam <= 1.0, "lam", "must be between 0 and 1")
        require(0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)")
        require(self.kl_estimator in ("k1", "k3"), "kl_estimator", f"must be 'k1' or 'k3', not {self.kl_estimator!r}")
        require(self.lr_scheduler in ("linear", "constant"), "lr_scheduler", "must be 'linear' or 'constant'")
        require(self.batch_size % self.mini_batches == 0, "mini_batches",
                f"must divide batch_size ({self.batch_size})", hint="choose a divisor of batch_size")
        require((self.batch_size // self.mini_batches) % self.grad_accum == 0, "grad_accum",
                f"must divide the minibatch size ({self.batch_size // self.mini_batches})")
        require(self.reward_clip is None or self.reward_clip > 0, "reward_clip", "must be > 0 or empty")
        require(self.missing_eos_penalty is None or self.missing_eos_penalty >= 0, "missing_eos_penalty",
                "must not be negative")
        require(bool(self.lora_target_modules) or self.full_finetune, "lora_target_modules",
                "name at least one module (e.g. q_proj,v_proj)")
        require(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"), "device",
                "must be auto, cpu, cuda, cuda:N or mps")
