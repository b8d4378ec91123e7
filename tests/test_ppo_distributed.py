"""PPO under torchrun with two CPU processes (gloo): both ranks train, stay identical, rank 0 records."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    from rlhf_desktop.core.context import RecordingContext
    from rlhf_desktop.training.common import ModelRef
    from rlhf_desktop.training.ppo import PPORunConfig
    from rlhf_desktop.training.ppo.engine import prepare_ppo

    base, out = sys.argv[1], sys.argv[2]
    ctx = RecordingContext()
    cfg = PPORunConfig(max_steps=2, batch_size=2, response_length=4, device="cpu", learning_rate=1e-2,
                       temperature=1.0)
    reward = lambda prompts, responses: [float(len(r)) for r in responses]
    loop = prepare_ppo(cfg, ["a", "b", "c", "d", "e"], ModelRef(base=base), ctx, out, reward_fn=reward)
    result = loop.run()
    lora = sum(float(p.double().sum()) for n, p in loop.policy.lm.named_parameters() if "lora_B" in n)
    rank = int(os.environ["RANK"])
    with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
        json.dump({"world": loop.world.size, "status": result.status, "steps": result.steps, "lora": lora,
                   "head": float(loop.policy.value_head.weight.double().sum()),
                   "metrics": ctx.metrics, "checkpoints": len(ctx.checkpoints)}, fh)
''')


def test_two_processes_train_one_policy(tiny_model_dir, tmp_path):
    script = tmp_path / "ppo_rank.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    out.mkdir()
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tiny_model_dir), str(out)], capture_output=True, text=True,
                          timeout=300, cwd=root, env={**__import__("os").environ, "PYTHONPATH": str(root),
                                                      "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert [(r["status"], r["steps"]) for r in ranks] == [("done", 2), ("done", 2)]
    assert ranks[0]["lora"] != 0.0 and ranks[0]["lora"] == ranks[1]["lora"]  # averaged gradients: one policy
    assert ranks[0]["head"] == ranks[1]["head"]
    assert [s for s, _ in ranks[0]["metrics"]] == [1, 2] and ranks[1]["metrics"] == []
    assert ranks[0]["metrics"][1][1]["episode"] == 2 * 2 * 2  # steps x batch_size x ranks
    assert (ranks[0]["checkpoints"], ranks[1]["checkpoints"]) == (1, 0)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["checkpoint-2"]
