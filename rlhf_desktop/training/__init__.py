"""Training stages as plain functions `run_<stage>(config, data, models, ctx, ...) -> RunResult` (no Qt).

sft, reward and dpo drive TRL's trainers; ppo/ is our own engine; runner.py ties a stage to the
project store (run rows, metrics, checkpoints, lineage) for the GUI and the CLI.
"""
