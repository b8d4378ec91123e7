"""Exporting checkpoints (merged, adapter, reward) and reloading them with plain transformers/peft in a
subprocess that never imports rlhf_desktop; the model card and lineage; atomicity under failures; the CLI."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from rlhf_desktop.core.context import RecordingContext
from rlhf_desktop.core.errors import ConfigError
from rlhf_desktop.store import runs
from rlhf_desktop.store.project import Project
from rlhf_desktop.training.common import ModelRef
from rlhf_desktop.training.export import ExportError, export_model
from rlhf_desktop.training.runner import start_run
from test_training_support import one_thread, seed_preferences  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = {"device": "cpu", "max_length": 160, "per_device_batch_size": 4, "save_every": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A project with an SFT run (a strong adapter), a reward-model run and a PPO run on top of the SFT."""
    folder = tmp_path_factory.mktemp("export") / "proj"
    with Project.create(folder) as project:
        seed_preferences(project, n=12, heldout_every=4)
    sft = start_run(folder, "sft", {**FAST, "max_steps": 3, "learning_rate": 0.05}, ModelRef(str(tiny_model_dir)))
    rm = start_run(folder, "rm", {**FAST, "max_steps": 2}, ModelRef(str(tiny_model_dir)))
    with Project.open(folder) as project:
        parent = runs.latest_checkpoint(project, sft.run_id)
    ppo = start_run(folder, "ppo", {"device": "cpu", "max_steps": 2, "batch_size": 2, "response_length": 6,
                                    "save_every": 1, "ppo_epochs": 1}, parent_checkpoint_id=parent["id"],
                    reward_run_id=rm.run_id)
    assert (sft.status, rm.status, ppo.status) == ("done", "done", "done"), (sft.error, rm.error, ppo.error)
    return {"folder": folder, "sft": sft.run_id, "rm": rm.run_id, "ppo": ppo.run_id, "base": Path(tiny_model_dir)}


RELOAD = textwrap.dedent("""
    import json, sys
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    base_dir, merged_dir, adapter_dir, reward_dir, pairs = sys.argv[1:6]
    pairs = json.loads(pairs)
    ids = torch.tensor([[5, 40, 41, 42, 43, 44, 45, 46]])
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
        plain = base(ids).logits
        with_adapter = PeftModel.from_pretrained(base, adapter_dir).eval()
        adapted = with_adapter(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
        merged_logits = merged(ids).logits
        tok = AutoTokenizer.from_pretrained(merged_dir)
        chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                       return_tensors="pt", return_dict=True)
        out = merged.generate(**chat, max_new_tokens=4, do_sample=False)
        rtok = AutoTokenizer.from_pretrained(reward_dir)
        rm = AutoModelForSequenceClassification.from_pretrained(reward_dir).eval()
        rewards = []
        for prompt, response in pairs:
            conv = rtok.apply_chat_template([{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": response}],
                                            return_tensors="pt", return_dict=True)
            rewards.append(rm(**conv).logits[0, 0].item())
    print(json.dumps({
        "merged_vs_adapter": (merged_logits - adapted).abs().max().item(),
        "merged_vs_base": (merged_logits - plain).abs().max().item(),
        "generated": out.shape[1] - chat["input_ids"].shape[1],
        "has_chat_template": bool(tok.chat_template),
        "rewards": rewards,
        "imported_rlhf_desktop": any(m.startswith("rlhf_desktop") for m in sys.modules),
    }))
""")


def _plain_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    return env


def test_every_kind_reloads_with_plain_transformers_and_peft(trained, tmp_path):
    from rlhf_desktop.training.reward import load_reward_model, score

    folder = trained["folder"]
    ctx = RecordingContext()
    merged = export_model(folder, trained["ppo"], kind="merged", out=tmp_path / "merged", ctx=ctx)
    adapter = export_model(folder, trained["ppo"], kind="adapter", out=tmp_path / "adapter")
    reward = export_model(folder, trained["rm"], kind="reward", out=tmp_path / "reward")
    assert ctx.progress_values[-1] == (3, 3) and "saving the merged model" in ctx.statuses
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "chat_template.jinja",
            "README.md", "lineage.json"} <= set(merged["files"])
    assert set(adapter["files"]) == {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                                     "tokenizer_config.json", "chat_template.jinja", "README.md", "lineage.json"}
    assert "model.safetensors" in reward["files"] and merged["path"] == str((tmp_path / "merged").resolve())
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(trained["base"].resolve())
    pairs = [["question 1: apple", "river stone GOOD"], ["question 2", "music"]]
    with Project.open(folder) as project:
        rm_ckpt = runs.latest_checkpoint(project, trained["rm"])["abs_path"]
    expected = score(*load_reward_model(rm_ckpt), [p for p, _ in pairs], [r for _, r in pairs])
    script = tmp_path / "reload.py"
    script.write_text(RELOAD)
    proc = subprocess.run([sys.executable, str(script), str(trained["base"]), merged["path"], adapter["path"],
                           reward["path"], json.dumps(pairs)], cwd=tmp_path, env=_plain_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not seen["imported_rlhf_desktop"]
    assert seen["merged_vs_base"] > 1e-2  # the adapter really changes the model ...
    assert seen["merged_vs_adapter"] < 1e-4  # ... and the merged weights equal base + adapter
    assert seen["generated"] >= 1 and seen["has_chat_template"]
    assert seen["rewards"] == pytest.approx(expected, abs=1e-4)


def test_model_card_and_lineage_carry_the_run_chain(trained, tmp_path):
    result = export_model(trained["folder"], trained["ppo"], kind="adapter", out=tmp_path / "a")
    text = (Path(result["path"]) / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["lineage"] == [trained["sft"], trained["ppo"]]
    assert [s["stage"] for s in front["stages"]] == ["sft", "ppo", "rm"]  # the chain, then the reward model
    assert front["stages"][0]["config"]["learning_rate"] == 0.05
    assert front["data_counts"][f"run_{trained['sft']}_sft"] > 0
    assert f"run_{trained['ppo']}_ppo" in front["final_metrics"]
    assert front["base_model"] == trained["base"].name and front["library_name"] == "peft"
    assert {"rlhf-desktop", "sft", "ppo", "lora"} <= set(front["tags"]) and front["date"]
    assert "PeftModel.from_pretrained" in text
    lineage = json.loads((Path(result["path"]) / "lineage.json").read_text())
    assert [r["run_id"] for r in lineage["runs"]] == [trained["sft"], trained["ppo"]]
    assert lineage["runs"][1]["parent_run_id"] == trained["sft"]
    assert lineage["reward_run"]["run_id"] == trained["rm"]
    assert lineage["checkpoint"]["run_id"] == trained["ppo"] and lineage["checkpoint"]["metadata"]["stage"] == "ppo"


def test_kinds_that_do_not_fit_the_run_are_refused(trained, tmp_path):
    with pytest.raises(ConfigError, match="not a reward model"):
        export_model(trained["folder"], trained["ppo"], kind="reward", out=tmp_path / "x")
    with pytest.raises(ConfigError, match="--kind reward"):
        export_model(trained["folder"], trained["rm"], kind="merged", out=tmp_path / "x")
    with pytest.raises(ConfigError, match="belongs to run"):
        export_model(trained["folder"], trained["ppo"], checkpoint_id=1, kind="merged", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_existing_targets_need_overwrite_and_only_model_folders_are_replaced(trained, tmp_path):
    out = tmp_path / "out"
    export_model(trained["folder"], trained["sft"], kind="adapter", out=out)
    with pytest.raises(ExportError, match="already exists"):
        export_model(trained["folder"], trained["sft"], kind="merged", out=out)
    result = export_model(trained["folder"], trained["sft"], kind="merged", out=out, overwrite=True)
    assert "model.safetensors" in result["files"] and "adapter_config.json" not in result["files"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(ExportError, match="will not be replaced"):
        export_model(trained["folder"], trained["sft"], kind="adapter", out=precious, overwrite=True)
    assert (precious / "thesis.txt").read_text() == "do not delete"
    with pytest.raises(ExportError, match="project folder"):
        export_model(trained["folder"], trained["sft"], kind="adapter", out=trained["folder"], overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "precious"]


def _raiser(exc: BaseException):
    def save(self, folder, *args, **kwargs):
        Path(folder, "model.safetensors").write_bytes(b"half a model")  # a partial write, then the failure
        raise exc
    return save


@pytest.mark.parametrize("exc, message", [
    (OSError(errno.ENOSPC, "No space left on device"), "disk is full"),
    (RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space" })'),
     "disk is full"),
    (PermissionError(errno.EACCES, "Permission denied"), "no permission"),
])
def test_a_failure_during_export_leaves_nothing_behind(trained, tmp_path, monkeypatch, exc, message):
    from transformers import PreTrainedModel

    old = tmp_path / "old"
    export_model(trained["folder"], trained["sft"], kind="adapter", out=old)
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", _raiser(exc))
    with pytest.raises(ExportError, match=message):
        export_model(trained["folder"], trained["sft"], kind="merged", out=tmp_path / "new" / "deep" / "merged")
    with pytest.raises(ExportError, match=message):
        export_model(trained["folder"], trained["sft"], kind="merged", out=old, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # no temp folder, no new parents
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before  # the earlier export is untouched


def test_a_failed_adapter_copy_leaves_nothing_behind(trained, tmp_path, monkeypatch):
    import shutil

    calls = []

    def copy(src, dst, *args, **kwargs):
        calls.append(src)
        if len(calls) == 2:
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        return shutil.copy(src, dst)

    monkeypatch.setattr(shutil, "copyfile", copy)
    with pytest.raises(ExportError, match="no permission"):
        export_model(trained["folder"], trained["ppo"], kind="adapter", out=tmp_path / "adapter")
    assert list(tmp_path.iterdir()) == []


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlhf_desktop", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_export_model_prints_path_and_files(trained, tmp_path):
    out = tmp_path / "cli-adapter"
    args = ["export-model", "--project", str(trained["folder"]), "--run", str(trained["ppo"]), "--kind", "adapter",
            "--out", str(out)]
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["path"] == str(out.resolve()) and "adapter_model.safetensors" in result["files"]
    again = _cli(*args)
    assert again.returncode == 2 and "already exists" in again.stderr and "--overwrite" in again.stderr
    assert _cli(*args, "--overwrite").returncode == 0
    wrong = _cli("export-model", "--project", str(trained["folder"]), "--run", str(trained["ppo"]), "--kind",
                 "reward", "--out", str(tmp_path / "r"))
    assert wrong.returncode == 2 and "not a reward model" in wrong.stderr
