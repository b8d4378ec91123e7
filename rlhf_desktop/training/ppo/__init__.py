"""Our PPO engine (issue 5): one base model in memory, stoppable and resumable.

`run_ppo(config, data, models, ctx, output_dir, ...) -> RunResult`; `PPORunConfig` holds its settings.
"""

from rlhf_desktop.training.ppo.config import PPORunConfig
from rlhf_desktop.training.ppo.engine import run_ppo

__all__ = ["PPORunConfig", "run_ppo"]
