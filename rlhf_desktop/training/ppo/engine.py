"""run_ppo: the PPO loop (InstructGPT; TRL's experimental PPOTrainer and CleanRL's ppo.py as references).

One step = rollout (sample, reference log-probs, reward) -> advantages (KL-penalised rewards, GAE) ->
PPO epochs over minibatches -> metrics under TRL's names. Pause and stop are honoured between the rollout
and the optimisation and between minibatches; a stop inside a step rolls that step back, so the checkpoint
it writes resumes exactly as if the run had never stopped.

Metrics reported every step (Python floats): TRL's objective/kl, objective/entropy, objective/scores,
objective/non_score_reward, objective/rlhf_reward, policy/approxkl_avg, policy/clipfrac_avg,
policy/entropy_avg, loss/policy_avg, loss/value_avg, val/clipfrac_avg, val/ratio, val/ratio_var,
val/num_eos_tokens (responses that ended with EOS), lr, episode, eps; plus completions/mean_length,
tokens_per_second, objective/kl_coef, guard/skipped_updates and time/* (seconds per phase of the step).
"""

from __future__ import annotations

import copy
import os
import random
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.errors import ConfigError, DataError, UserError
from rlhf_desktop.core.results import RunResult
from rlhf_desktop.modeling.device import choose_device, choose_dtype
from rlhf_desktop.modeling.loading import load_tokenizer
from rlhf_desktop.training.checkpoints import resolve_base
from rlhf_desktop.training.common import free_memory, is_out_of_memory
from rlhf_desktop.training.ppo import checkpoint as ckpt
from rlhf_desktop.training.ppo.config import PPORunConfig
from rlhf_desktop.training.ppo.distributed import World, local_device
from rlhf_desktop.training.ppo.core import (AdaptiveKLController, entropy_from_logits, gae, kl_estimate,
                                            masked_mean, masked_whiten, policy_loss, token_logprobs, value_loss)
from rlhf_desktop.training.ppo.policy import PolicyValueModel, build_policy
from rlhf_desktop.training.ppo.reward import FunctionReward, RewardFn, load_reward
from rlhf_desktop.training.ppo.rollout import Rollout, decode_responses, encode_prompts, left_pad, sample


class _Stop(Exception):
    """Raised inside a step when the user asked to stop; the step is rolled back."""


def run_ppo(config: PPORunConfig, data: list[str], models: Any, ctx: JobContext, output_dir: Path,
            resume_from: str | None = None, reward_checkpoint: str | None = None,
            reward_fn: RewardFn | None = None) -> RunResult:
    """Train a policy with PPO against a reward model (or `reward_fn`) and return how the run ended.

    models: a training.common.ModelRef (`base` spec, `adapter`: an SFT LoRA checkpoint to start from).
    reward_checkpoint: a reward-model run's checkpoint folder; reward_fn(prompts, responses) -> scores
    replaces it for programmatic rewards. Checkpoints go to output_dir/checkpoint-<step>/; resume_from
    is one of them and continues the run exactly. Like the TRL stages, every failure becomes a failed
    RunResult whose error says what to change (the traceback goes to the run log).
    """
    loop = None
    threads = torch.get_num_threads()
    try:
        loop = prepare_ppo(config, data, models, ctx, Path(output_dir), resume_from, reward_checkpoint, reward_fn)
        return loop.run()
    except Exception as exc:  # every failure ends the run, never the app
        ctx.log(traceback.format_exc())
        ctx.status("failed")
        step = loop.step if loop is not None else 0
        return RunResult("failed", step, {}, loop.last_checkpoint if loop is not None else None,
                         error=_failure_message(exc))
    finally:
        loop = None
        torch.set_num_threads(threads)
        free_memory()


def prepare_ppo(config: PPORunConfig, data: list[str], models: Any, ctx: JobContext, output_dir: Path,
                resume_from: str | None = None, reward_checkpoint: str | None = None,
                reward_fn: RewardFn | None = None) -> "PPOLoop":
    """Validate, load the models and the reward, and build the loop (resumed when asked); raises on errors.

    `run_ppo` is this plus `.run()` plus failure handling; tests and benchmarks use it to reach the models.
    """
    config.validate()
    if not data:
        raise DataError("no prompts to train on", where="data", hint="add prompts to the project first")
    if reward_fn is None and not reward_checkpoint:
        raise ConfigError("no reward model given", where="reward_checkpoint", hint="choose a reward-model run")
    device = local_device(choose_device(config.device))
    dtype = torch.float32 if config.full_finetune else choose_dtype(device)  # AdamW on half weights loses updates
    if config.leave_core_for_gui and device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    _seed_everything(config.seed)
    base, start_adapter = _model_paths(models, resume_from)
    ctx.status("loading model")
    tokenizer = load_tokenizer(base)
    policy = build_policy(base, start_adapter, config, device, dtype)
    if reward_fn is not None:
        scorer = FunctionReward(reward_fn)
    else:
        ctx.status("loading reward model")
        scorer = load_reward(reward_checkpoint, policy, base, tokenizer, device, dtype)
    loop = PPOLoop(config, policy, scorer, tokenizer, data, ctx, Path(output_dir), base, start_adapter)
    if resume_from:
        loop.resume(Path(resume_from))
    ctx.status("training")
    return loop


def _failure_message(exc: BaseException) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if is_out_of_memory(exc):
        return (f"out of memory ({type(exc).__name__}: {first}). Lower batch_size or response_length, raise "
                "grad_accum (same batch, less memory), or use a smaller lora_r instead of full fine-tuning.")
    return f"{type(exc).__name__}: {first}"


def _model_paths(models: Any, resume_from: str | None) -> tuple[Path, Path | None]:
    """(resolved base folder, starting adapter folder or None); a resumed run reuses its checkpoint's."""
    base = getattr(models, "base", models)
    adapter = getattr(models, "adapter", None)
    if resume_from:
        meta = ckpt.read_checkpoint_meta(Path(resume_from))
        adapter = adapter or meta.get("parent_checkpoint")
    return resolve_base(base if base is not None else "default"), (Path(adapter) if adapter else None)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class PPOLoop:
    """The state of one PPO run: models, optimizer, scheduler, KL controller, step count; `run()` trains."""

    def __init__(self, config: PPORunConfig, policy: PolicyValueModel, scorer, tokenizer, data: list[str],
                 ctx: JobContext, output_dir: Path, base_folder: Path, start_adapter: Path | None):
        self.cfg, self.policy, self.scorer, self.tok, self.ctx = config, policy, scorer, tokenizer, ctx
        self.data = list(data)
        self.output_dir, self.base_folder, self.start_adapter = output_dir, base_folder, start_adapter
        self.rows = encode_prompts(tokenizer, self.data, config.max_prompt_length)
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        named = policy.trainable_parameters()
        self.params = [p for _, p in named]
        self.trainable = frozenset(n for n, _ in named)
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=0.0)
        total = config.max_steps
        decay = (lambda s: max(0.0, 1.0 - s / total)) if config.lr_scheduler == "linear" else (lambda s: 1.0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, decay)
        self.kl_ctl = AdaptiveKLController(config.kl_coef, config.target_kl if config.adaptive_kl else None,
                                           config.horizon)
        self.world = World(policy.device)
        self.step = 0
        self.last_checkpoint: str | None = None
        self._saved_step: int | None = None
        self._perms: dict[int, torch.Tensor] = {}

    # -- control ----------------------------------------------------------------------------------
    def run(self) -> RunResult:
        metrics: dict[str, float] = {}
        while self.step < self.cfg.max_steps:
            if self.world.any(self.ctx.wait_if_paused()):
                return self._stopped()
            if self.world.on:  # per-rank streams; a checkpoint holds rank 0's RNG only
                torch.manual_seed(self.world.step_seed(self.cfg.seed, self.step + 1))
            step_start_rng = ckpt.capture_rng()
            try:
                metrics = self._one_step(self.step + 1)
            except _Stop:
                ckpt.restore_rng(step_start_rng)
                return self._stopped()
            self.step += 1
            if self.world.main:
                self.ctx.report(self.step, metrics)
                self.ctx.progress(self.step, self.cfg.max_steps)
            if self.step % self.cfg.save_every == 0 or self.step == self.cfg.max_steps:
                self.save()
            if self.world.any(self.ctx.should_stop()):
                return self._stopped()
        if self._saved_step != self.step:
            self.save()
        return RunResult(status="done", steps=self.step, final_metrics=metrics, checkpoint_path=self.last_checkpoint)

    def _stopped(self) -> RunResult:
        if self._saved_step != self.step:
            self.save()
        self.ctx.status("stopped")
        return RunResult(status="stopped", steps=self.step, checkpoint_path=self.last_checkpoint)

    def _check(self) -> None:
        """Pause here if asked; raise _Stop if a stop was requested (on any rank)."""
        if self.world.any(self.ctx.wait_if_paused() or self.ctx.should_stop()):
            raise _Stop()

    # -- one step ---------------------------------------------------------------------------------
    def _one_step(self, step: int) -> dict[str, float]:
        cfg, policy, timer = self.cfg, self.policy, _Timer(self.policy.device)
        indices = self._batch_indices(step)
        prompts = [self.data[i] for i in indices]
        ids, mask = left_pad([self.rows[i] for i in indices], self.pad_id, policy.device)
        with torch.no_grad():
            ro = sample(policy, ids, mask, cfg.response_length, cfg.temperature, self.eos_id, self.pad_id)
            timer.lap("time/generation")
            ref_logits, _ = policy.response_outputs(ro.seq, ro.seq_mask, ids.shape[1], cfg.temperature,
                                                    reference=True)
            ref_logprobs = token_logprobs(ref_logits, ro.tokens)
            del ref_logits
            timer.lap("time/reference")
            responses = decode_responses(self.tok, ro)
            scores = self.scorer.score(prompts, responses, policy.device)
            timer.lap("time/reward")
            batch = self._advantages(ro, ref_logprobs, scores)
        self._check()  # between rollout and optimisation
        stats, skipped = self._optimise(ro, batch, timer)
        self._assert_trainable()
        metrics = self._metrics(ro, batch, stats, skipped, timer, step)
        with warnings.catch_warnings():  # every update of the step may have been skipped by the guard
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.scheduler.step()
        self.kl_ctl.update(metrics["objective/kl"], cfg.batch_size * self.world.size)
        if self.world.main:
            self.ctx.samples(step, self._sample_rows(prompts, responses, batch))
        return metrics

    def _batch_indices(self, step: int) -> list[int]:
        """Prompt indices of `step` on this rank: a fresh seeded permutation per pass over the data (resume
        needs no state); with several ranks each takes its own `batch_size` slice of the global batch."""
        n, size = len(self.data), self.cfg.batch_size
        first = ((step - 1) * self.world.size + self.world.rank) * size
        out = []
        for i in range(first, first + size):
            epoch = i // n
            if epoch not in self._perms:
                gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
                self._perms = {epoch: torch.randperm(n, generator=gen)}
            out.append(int(self._perms[epoch][i % n]))
        return out

    def _advantages(self, ro: Rollout, ref_logprobs: torch.Tensor, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """KL-penalised per-token rewards with the score at the last valid token, then GAE. All (B, R)."""
        cfg, mask = self.cfg, ro.mask
        has_eos = ((ro.tokens == self.eos_id) & mask).any(1)
        if cfg.reward_clip is not None:
            scores = scores.clamp(-cfg.reward_clip, cfg.reward_clip)
        if cfg.missing_eos_penalty is not None:
            scores = scores - cfg.missing_eos_penalty * (~has_eos).float()
        kl = kl_estimate(ro.logprobs, ref_logprobs, cfg.kl_estimator) * mask
        non_score = -self.kl_ctl.value * kl
        rewards = non_score.clone()
        last = mask.long().sum(1) - 1  # (B,) last valid response position
        rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += scores
        if cfg.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False) * mask
        advantages, returns = gae(rewards, ro.values, cfg.gamma, cfg.lam)
        advantages = masked_whiten(advantages, mask) * mask
        return {"kl": kl, "non_score": non_score, "scores": scores, "advantages": advantages,
                "returns": returns, "has_eos": has_eos}

    def _optimise(self, ro: Rollout, batch: dict[str, torch.Tensor], timer: "_Timer"):
        """PPO epochs over shuffled minibatches; returns (per-minibatch stats (N, 7), skipped optimizer steps)."""
        cfg, policy = self.cfg, self.policy
        if self.world.any(not bool(torch.isfinite(batch["kl"].sum()))):
            self.ctx.log("guard: the rollout's KL is not finite; this step's update is skipped")
            return torch.full((1, 7), float("nan")), cfg.ppo_epochs * cfg.mini_batches
        snapshot = self._snapshot() if not cfg.full_finetune else None
        mb_size = cfg.batch_size // cfg.mini_batches
        stats, skipped = [], 0
        policy.train(cfg.lora_dropout > 0)
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(cfg.batch_size)
            for m in range(cfg.mini_batches):
                if snapshot is None:  # full fine-tuning keeps no copy: pause here, stop after the step
                    self.ctx.wait_if_paused()
                elif self.world.any(self.ctx.wait_if_paused() or self.ctx.should_stop()):  # between minibatches
                    self._rollback(snapshot)
                    raise _Stop()
                minibatch = self._minibatch(ro, batch, order[m * mb_size:(m + 1) * mb_size].to(ro.tokens.device))
                stats.append(minibatch)
                timer.lap("time/ppo_forward_backward")
                skipped += self._optimizer_step(minibatch[6])
                timer.lap("time/optimizer")
        policy.train(False)
        return torch.stack(stats).float().cpu(), skipped

    def _minibatch(self, ro: Rollout, batch: dict[str, torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        """Forward and backward over one minibatch in `grad_accum` micro-batches; returns its 7 stats.

        Each micro-batch's token-mean loss is weighted by its share of the minibatch's valid tokens, so
        the accumulated gradient (and every stat) equals that of the whole minibatch at once: grad_accum
        trades speed for memory and nothing else.
        """
        cfg, policy = self.cfg, self.policy
        count = ro.mask[rows].sum().clamp(min=1)
        micro = len(rows) // cfg.grad_accum
        sums = torch.zeros(7, device=rows.device)
        for start in range(0, len(rows), micro):
            idx = rows[start:start + micro]
            mask = ro.mask[idx]
            logits, vpred = policy.response_outputs(ro.seq[idx], ro.seq_mask[idx], ro.prompt_ids.shape[1],
                                                    cfg.temperature)
            pg = policy_loss(token_logprobs(logits, ro.tokens[idx]), ro.logprobs[idx], batch["advantages"][idx],
                             mask, cfg.cliprange)
            vf = value_loss(vpred, ro.values[idx], batch["returns"][idx], mask, cfg.cliprange_value)
            share = mask.sum() / count
            ((pg["loss"] + cfg.vf_coef * vf["loss"]) * share).backward()
            with torch.no_grad():  # after backward: the graph's activations are already freed
                entropy = masked_mean(entropy_from_logits(logits.detach()), mask)
                sums += share * torch.stack([pg["approxkl"], pg["clipfrac"], pg["loss"].detach(),
                                             vf["loss"].detach(), vf["clipfrac"], entropy, pg["ratio"]])
            del logits, vpred, pg, vf
        return sums

    def _optimizer_step(self, ratio_tensor: torch.Tensor) -> int:
        """Average the gradients across ranks, clip and apply them, unless the ratio blew up or a gradient
        is not finite (decided on the averaged values, so every rank decides alike)."""
        if self.world.on:
            for p in self.params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            ratio_tensor = ratio_tensor.detach().clone().reshape(1)
            self.world.mean_([p.grad for p in self.params] + [ratio_tensor])
        grads_finite = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in self.params)
        ratio = float(ratio_tensor)
        if not grads_finite or not np.isfinite(ratio) or (self.cfg.ratio_guard > 0 and ratio > self.cfg.ratio_guard):
            self.ctx.log(f"guard: update skipped (mean ratio {ratio:.3g}, finite gradients {grads_finite})")
            self.optimizer.zero_grad(set_to_none=True)
            return 1
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._assert_trainable()
        return 0

    def _assert_trainable(self) -> None:
        """PEFT's set_adapter moves requires_grad; the trainable set must never change (issue 5 pitfall)."""
        now = self.policy.trainable_names()
        if now != self.trainable:
            raise RuntimeError(f"trainable parameters changed: +{sorted(now - self.trainable)[:3]} "
                               f"-{sorted(self.trainable - now)[:3]}")

    def _snapshot(self) -> tuple[list[torch.Tensor], dict]:
        return [p.detach().clone() for p in self.params], copy.deepcopy(self.optimizer.state_dict())

    def _rollback(self, snapshot: tuple[list[torch.Tensor], dict]) -> None:
        values, opt_state = snapshot
        with torch.no_grad():
            for p, v in zip(self.params, values):
                p.copy_(v)
        self.optimizer.load_state_dict(opt_state)
        self.optimizer.zero_grad(set_to_none=True)
        self.policy.train(False)

    # -- reporting --------------------------------------------------------------------------------
    def _metrics(self, ro: Rollout, batch: dict[str, torch.Tensor], stats: torch.Tensor, skipped: int,
                 timer: "_Timer", step: int) -> dict[str, float]:
        mask = ro.mask
        kl_sum = batch["kl"].sum(1).mean()
        non_score = batch["non_score"].sum(1).mean()
        scores = batch["scores"].mean()
        approxkl, clipfrac, pg_loss, vf_loss, vf_clipfrac, entropy, ratio = stats.mean(0).tolist()
        lengths = mask.float().sum(1)
        elapsed = timer.total()
        metrics = {
            "objective/kl": float(kl_sum),
            "objective/entropy": float((-ro.logprobs * mask).sum(1).mean()),
            "objective/non_score_reward": float(non_score),
            "objective/rlhf_reward": float(non_score + scores),
            "objective/scores": float(scores),
            "objective/kl_coef": float(self.kl_ctl.value),
            "policy/approxkl_avg": approxkl, "policy/clipfrac_avg": clipfrac, "policy/entropy_avg": entropy,
            "loss/policy_avg": pg_loss, "loss/value_avg": vf_loss, "val/clipfrac_avg": vf_clipfrac,
            "val/ratio": ratio,
            "val/ratio_var": float(stats[:, 6].var()) if stats.shape[0] > 1 else 0.0,
            "val/num_eos_tokens": float(batch["has_eos"].sum()),
            "completions/mean_length": float(lengths.mean()),
            "lr": float(self.scheduler.get_last_lr()[0]),
            "episode": float(step * self.cfg.batch_size),
            "eps": self.cfg.batch_size / elapsed,
            "tokens_per_second": float(lengths.sum()) / elapsed,
            "guard/skipped_updates": float(skipped),
        }
        metrics.update(timer.laps)
        metrics["time/step"] = elapsed
        metrics = self.world.mean_metrics(metrics, summed=("eps", "tokens_per_second", "val/num_eos_tokens"))
        metrics["episode"] = float(step * self.cfg.batch_size * self.world.size)
        return metrics

    def _sample_rows(self, prompts: list[str], responses: list[str], batch: dict) -> list[dict[str, Any]]:
        n = min(self.cfg.num_sample_rollouts, len(prompts))
        kl = batch["kl"].sum(1).tolist()
        scores = batch["scores"].tolist()
        return [{"prompt": prompts[i], "response": responses[i], "score": float(scores[i]), "kl": float(kl[i])}
                for i in range(n)]

    # -- checkpoints ------------------------------------------------------------------------------
    def save(self) -> None:
        folder = self.output_dir / f"checkpoint-{self.step}"
        if not self.world.main:  # rank 0 writes; the others only remember where it is
            self.last_checkpoint, self._saved_step = str(folder.resolve()), self.step
            return
        self.ctx.status("saving checkpoint")
        state = {"step": self.step, "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "kl_ctl": self.kl_ctl.state_dict(),
                 "rng": ckpt.capture_rng()}
        meta = ckpt.checkpoint_meta(step=self.step, config=self.cfg, base_model=self.base_folder,
                                    start_adapter=self.start_adapter, full=self.cfg.full_finetune)
        ckpt.save_checkpoint(folder, policy=self.policy, tokenizer=self.tok, state=state, meta=meta)
        self.last_checkpoint, self._saved_step = str(folder.resolve()), self.step
        self.ctx.checkpoint(self.step, self.last_checkpoint, "full" if self.cfg.full_finetune else "adapter")

    def resume(self, folder: Path) -> None:
        """Continue from a checkpoint: weights, optimizer, scheduler, KL coefficient, RNG and step."""
        ckpt.read_checkpoint_meta(folder)
        ckpt.load_weights(folder, self.policy)
        state = ckpt.load_state(folder)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        ckpt.restore_rng(state["rng"])
        self.step = self._saved_step = int(state["step"])
        self.last_checkpoint = str(folder.resolve())
        self.ctx.status(f"resumed at step {self.step}")


class _Timer:
    """Seconds per phase of a step; synchronises the GPU at each lap so the figures are real."""

    def __init__(self, device: torch.device):
        self.device = device
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self.last
        self.last = now

    def total(self) -> float:
        return max(time.perf_counter() - self.start, 1e-9)
