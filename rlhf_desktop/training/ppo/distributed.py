"""Several processes (`accelerate launch`, `torchrun`): each samples its own prompts, gradients are averaged.

Every rank builds the same initial weights (same seed), rolls out `batch_size` prompts of its own, and
averages gradients before each optimizer step, so all ranks stay identical; decisions (stop, skip an
update) are taken together so no rank waits forever in a collective. Rank 0 alone reports and saves.
"""

from __future__ import annotations

import os

import torch


class World:
    """This process's rank and the collectives PPO needs; a no-op in a single process."""

    def __init__(self, device: torch.device | str = "cpu"):
        import torch.distributed as dist

        self.dist = dist
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size > 1 and dist.is_available() and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if str(device).startswith("cuda") else "gloo")
        self.on = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.on else 0
        self.size = dist.get_world_size() if self.on else 1
        self.device = torch.device(device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is True on any rank."""
        if not self.on:
            return bool(flag)
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        self.dist.all_reduce(value, op=self.dist.ReduceOp.MAX)
        return bool(value.item())

    def mean_(self, tensors: list[torch.Tensor]) -> None:
        """Average tensors in place across ranks (one flat all-reduce)."""
        if not self.on or not tensors:
            return
        flat = torch.cat([t.reshape(-1).to(self.device, torch.float32) for t in tensors])
        self.dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n

    def mean_metrics(self, metrics: dict[str, float], summed: tuple[str, ...]) -> dict[str, float]:
        """Average a step's metrics across ranks; the keys in `summed` become totals instead."""
        if not self.on:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64)
        self.mean_([values])
        out = dict(zip(keys, values.tolist()))
        for key in summed:
            if key in out:
                out[key] *= self.size
        return out

    def step_seed(self, seed: int, step: int) -> int:
        """A seed per (run seed, step, rank): ranks sample different responses, and resume stays exact."""
        return (seed * 1_000_003 + step * 9_973 + self.rank * 101) % (2**63 - 1)


def local_device(device: str) -> str:
    """Each rank on its own GPU (LOCAL_RANK) when several processes share a machine."""
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        index = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(index)
        return f"cuda:{index}"
    return device
