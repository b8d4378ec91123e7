"""Exporting a checkpoint as a folder that plain transformers (and peft) open, with no rlhf_desktop import.

Kinds (checkpoint layout: see training/common.py):

    merged   the LoRA adapter merged into its base (`PeftModel.merge_and_unload`) and saved as a causal LM:
             config.json, model.safetensors, generation_config.json, tokenizer files, chat_template.jinja.
             A full fine-tuned checkpoint is saved the same way. Opens with AutoModelForCausalLM.
    adapter  the LoRA adapter alone (adapter_config.json, adapter_model.safetensors) plus the tokenizer.
             Its `base_model_name_or_path` is the base model's resolved local folder at export time (an
             absolute path), so `AutoPeftModelForCausalLM.from_pretrained(folder)` works on this machine;
             elsewhere load the base yourself and call `PeftModel.from_pretrained(base, folder)`. The model
             card names the base (and its Hub id when known). A reward-model adapter goes on
             `AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)`.
    reward   a reward-model run's checkpoint as one merged sequence-classification model (1 label, the
             `score` head on the last non-pad token). Opens with AutoModelForSequenceClassification.

Merging happens in float32; the merged weights are saved in the base model's own dtype. A PPO
checkpoint's value head and every optimizer/trainer state stay behind: an export is for inference.

Every export carries README.md (a model card whose YAML front matter holds base_model, tags, the stages
with their configs, data counts, final metrics and the date) and lineage.json (the chain of runs from
the base model, with their checkpoints, and the reward-model run a PPO run trained against).

Atomic: everything is written into a hidden temporary folder beside the target and renamed into place
(an existing target is only replaced with overwrite=True, and only when it is empty or looks like a
model or an earlier export). Disk-full and permission errors become ExportError; whatever fails, no
temporary folder, half-written target or newly created parent folder is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from rlhf_desktop import __version__
from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.errors import ConfigError, ModelLoadError, UserError
from rlhf_desktop.store import runs as store
from rlhf_desktop.store.project import Project
from rlhf_desktop.training.common import METADATA_FILE, read_metadata

KINDS = ("merged", "adapter", "reward")
CARD_FILE = "README.md"
LINEAGE_FILE = "lineage.json"
# What a checkpoint holds for training only; an adapter export copies everything else.
_TRAINING_ONLY = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "trainer_state.json",
                  "trainer_state.pt", "value_head.safetensors", "README.md", METADATA_FILE}
_MODEL_MARKERS = ("config.json", "adapter_config.json", LINEAGE_FILE, "model.safetensors")
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)
_NO_PERMISSION = (errno.EACCES, errno.EPERM, errno.EROFS)


class ExportError(UserError):
    """The export's target cannot be written (exists, no permission, disk full)."""


@dataclass
class ExportSource:
    """The checkpoint being exported and what it is."""

    run: dict[str, Any]
    checkpoint: dict[str, Any]
    folder: Path
    meta: dict[str, Any]
    base: Path  # the resolved base model folder
    fmt: str  # "lora" or "full"
    task: str  # "causal" or "reward"


# -- public entry point ----------------------------------------------------------------------
def export_model(project: Project | str | Path, run_id: int, checkpoint_id: int | None = None,
                 kind: str = "merged", out: str | Path | None = None, overwrite: bool = False,
                 ctx: JobContext | None = None) -> dict[str, Any]:
    """Export a run's checkpoint (default: its latest) as `kind` into `out`; returns {path, files}.

    project: an open Project or a project folder (a worker thread passes the folder). out: the
    folder to create (default: <project>/exports/run-<id>-step-<n>-<kind>). Raises ConfigError for a
    kind that does not fit the run, ExportError when the target exists (without overwrite) or cannot
    be written, ModelLoadError when the checkpoint cannot be loaded, Cancelled when ctx asks to stop.
    """
    ctx = ctx or JobContext()
    if kind not in KINDS:
        raise ConfigError(f"unknown export kind {kind!r}", where="kind", hint=f"one of {', '.join(KINDS)}")
    with _opened(project) as proj:
        source = find_source(proj, run_id, checkpoint_id, kind)
        target = Path(out) if out is not None else proj.exports_dir / default_name(source, kind)
        target = target.expanduser().resolve()
        _check_target(target, overwrite, proj.folder, source.folder)
        provenance = _provenance(proj, source, kind)
    with _staging(target, overwrite) as tmp:
        _check_space(tmp.parent, _estimate_bytes(source, kind), target)
        steps = 3
        ctx.check()
        ctx.progress(0, steps)
        WRITERS[kind](source, tmp, ctx)
        ctx.progress(2, steps)
        ctx.status("writing the model card and lineage")
        write_card(tmp, source, kind, provenance)
        ctx.check()
    ctx.progress(steps, steps)
    ctx.status(f"exported to {target}")
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    return {"path": str(target), "files": files}


def default_name(source: ExportSource, kind: str) -> str:
    """The folder name an export gets when none is given: run-<id>-step-<n>-<kind>."""
    return f"run-{source.run['id']}-step-{source.checkpoint['step']}-{kind}"


@contextlib.contextmanager
def _opened(project: Project | str | Path) -> Iterator[Project]:
    if isinstance(project, Project):
        yield project
    else:
        with Project.open(project) as proj:
            yield proj


# -- what is exported ------------------------------------------------------------------------
def find_source(project: Project, run_id: int, checkpoint_id: int | None, kind: str) -> ExportSource:
    """The checkpoint to export, checked against the kind; UserError naming what to choose instead."""
    from rlhf_desktop.training.checkpoints import resolve_base

    run = store.get_run(project, run_id)
    if checkpoint_id is None:
        ckpt = store.latest_checkpoint(project, run_id)
        if ckpt is None:
            raise ConfigError(f"run {run_id} has no checkpoint on disk", where="--run",
                              hint="train (or resume) it until it writes a checkpoint")
    else:
        ckpt = store.get_checkpoint(project, checkpoint_id)
        if int(ckpt["run_id"]) != int(run_id):
            raise ConfigError(f"checkpoint {checkpoint_id} belongs to run {ckpt['run_id']}, not run {run_id}",
                              where="--checkpoint", hint="pick one of this run's checkpoints")
    folder = Path(ckpt["abs_path"])
    if not folder.is_dir():
        raise ModelLoadError("the checkpoint folder is gone from disk", where=str(folder),
                             hint="choose another checkpoint")
    meta = read_metadata(folder)
    fmt = "lora" if (folder / "adapter_config.json").is_file() else "full"
    task = meta.get("task") or ("reward" if run["stage"] == "rm" else "causal")
    if fmt == "lora":
        base_spec = meta.get("base_model") or run["base_model"] or json.loads(
            (folder / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
        base = resolve_base(base_spec)
    else:
        base = folder
    _check_kind(kind, task, fmt, run)
    return ExportSource(run, ckpt, folder, meta, base, fmt, task)


def _check_kind(kind: str, task: str, fmt: str, run: dict[str, Any]) -> None:
    stage = run["stage"]
    if kind == "reward" and task != "reward":
        raise ConfigError(f"run {run['id']} is a {stage} run, not a reward model", where="--kind",
                          hint="export it as merged or adapter, or choose a reward-model (rm) run")
    if kind == "merged" and task == "reward":
        raise ConfigError(f"run {run['id']} is a reward model: its merged form is --kind reward", where="--kind",
                          hint="use --kind reward (or adapter for the LoRA weights alone)")
    if kind == "adapter" and fmt != "lora":
        raise ConfigError(f"run {run['id']} trained every weight (full fine-tuning): there is no adapter",
                          where="--kind", hint="export it as merged" if task == "causal" else "export it as reward")


# -- writers ---------------------------------------------------------------------------------
def _write_merged(source: ExportSource, tmp: Path, ctx: JobContext) -> None:
    ctx.status("loading the base model and the adapter")
    model = _load_merged(source, "causal")
    ctx.check()
    ctx.progress(1, 3)
    ctx.status("saving the merged model")
    _align_generation(model, source)
    model.save_pretrained(str(tmp))
    del model
    _save_tokenizer(source, tmp)
    if not (tmp / "generation_config.json").is_file():
        from transformers import GenerationConfig

        GenerationConfig.from_model_config(_read_config(tmp)).save_pretrained(str(tmp))


def _write_reward(source: ExportSource, tmp: Path, ctx: JobContext) -> None:
    ctx.status("loading the reward model")
    model = _load_merged(source, "reward")
    ctx.check()
    ctx.progress(1, 3)
    ctx.status("saving the reward model")
    model.save_pretrained(str(tmp))
    del model
    _save_tokenizer(source, tmp)


def _write_adapter(source: ExportSource, tmp: Path, ctx: JobContext) -> None:
    ctx.status("copying the adapter")
    files = [p for p in sorted(source.folder.iterdir()) if p.is_file() and p.name not in _TRAINING_ONLY]
    for i, path in enumerate(files):
        ctx.check()
        if path.name == "adapter_config.json":
            config = json.loads(path.read_text(encoding="utf-8"))
            config["base_model_name_or_path"] = str(source.base)
            config["inference_mode"] = True
            (tmp / path.name).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        else:
            shutil.copyfile(path, tmp / path.name)
        ctx.progress(1 + (i + 1) / len(files), 3)


WRITERS: dict[str, Callable[[ExportSource, Path, JobContext], None]] = {
    "merged": _write_merged, "adapter": _write_adapter, "reward": _write_reward}


def _load_merged(source: ExportSource, task: str):
    """The checkpoint as one plain model (adapter merged in float32), cast to the base's dtype."""
    import torch

    from transformers.utils import logging as hf_logging

    from rlhf_desktop.training.checkpoints import load_checkpoint

    hf_logging.disable_progress_bar()  # progress goes through the context, not tqdm on stderr
    model, _tok = load_checkpoint(source.folder, task=task, dtype=torch.float32)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    dtype = _saved_dtype(source.base)
    if dtype is not None:
        model.to(dtype)
    model.config.use_cache = True
    return model


def _saved_dtype(folder: Path):
    import torch

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = config.get("dtype") or config.get("torch_dtype")
    value = getattr(torch, str(name), None) if name else None
    return value if isinstance(value, torch.dtype) else None


def _read_config(folder: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(folder), local_files_only=True)


def _align_generation(model, source: ExportSource) -> None:
    """Take the base model's generation config and make sure it stops at the tokenizer's EOS."""
    from transformers import GenerationConfig

    from rlhf_desktop.modeling.loading import load_tokenizer

    if (source.base / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(source.base), local_files_only=True)
    tok = load_tokenizer(source.folder)
    gen = model.generation_config
    if gen.eos_token_id is None:
        gen.eos_token_id = tok.eos_token_id
    if gen.pad_token_id is None:
        gen.pad_token_id = tok.pad_token_id


def _save_tokenizer(source: ExportSource, tmp: Path) -> None:
    """The tokenizer the run trained with, as saved (chat template included)."""
    from transformers import AutoTokenizer

    folder = source.folder if (source.folder / "tokenizer_config.json").is_file() else source.base
    AutoTokenizer.from_pretrained(str(folder), local_files_only=True).save_pretrained(str(tmp))


# -- provenance: model card and lineage ------------------------------------------------------
def _stage_entry(project: Project, run: dict[str, Any]) -> dict[str, Any]:
    ckpts = store.list_checkpoints(project, run["id"])
    return {
        "run_id": run["id"], "stage": run["stage"], "name": run["name"], "status": run["status"],
        "base_model": run["base_model"], "parent_run_id": run["parent_run_id"],
        "parent_checkpoint_id": run["parent_checkpoint_id"],
        "data": {"rows": run["data_size"], "hash": run["data_hash"]},
        "config": run["config"], "final_metrics": run["final_metrics"],
        "created_at": run["created_at"], "finished_at": run["finished_at"],
        "checkpoints": [{"id": c["id"], "step": c["step"], "path": c["path"], "metrics": c["metrics"]} for c in ckpts],
    }


def _provenance(project: Project, source: ExportSource, kind: str) -> dict[str, Any]:
    chain = [_stage_entry(project, r) for r in store.lineage(project, source.run["id"])]
    reward = None
    reward_run_id = source.run["config"].get("reward_run_id")
    if source.run["stage"] == "ppo" and reward_run_id is not None:
        with contextlib.suppress(UserError):
            reward = _stage_entry(project, store.get_run(project, int(reward_run_id)))
    ckpt = source.checkpoint
    return {
        "format": 1,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "app": f"rlhf-desktop {__version__}",
        "kind": kind,
        "project": str(project.folder),
        "base_model": {"name": base_name(source.base), "path": str(source.base)},
        "checkpoint": {"id": ckpt["id"], "run_id": ckpt["run_id"], "step": ckpt["step"], "path": ckpt["path"],
                       "metrics": ckpt["metrics"], "metadata": source.meta},
        "runs": chain,
        "reward_run": reward,
    }


def base_name(base: Path) -> str:
    """A readable name for a base model folder: its Hub id when the path shows one, else the folder name."""
    from rlhf_desktop.modeling.default_model import DEFAULT_MODEL_NAME

    parts = base.parts
    for part in parts:
        if part.startswith("models--"):
            return part[len("models--"):].replace("--", "/")
    if base.name == DEFAULT_MODEL_NAME:
        return f"HuggingFaceTB/{DEFAULT_MODEL_NAME}"
    return base.name


def write_card(folder: Path, source: ExportSource, kind: str, provenance: dict[str, Any]) -> None:
    """README.md (YAML front matter + how to load it) and lineage.json into `folder`."""
    import yaml

    (folder / LINEAGE_FILE).write_text(json.dumps(provenance, indent=2, default=str), encoding="utf-8")
    stages = provenance["runs"] + ([provenance["reward_run"]] if provenance["reward_run"] else [])
    front = {
        "base_model": provenance["base_model"]["name"],
        "base_model_path": provenance["base_model"]["path"],
        "library_name": "peft" if kind == "adapter" else "transformers",
        "pipeline_tag": "text-classification" if source.task == "reward" else "text-generation",
        "tags": _tags(source, kind, provenance),
        "date": provenance["exported_at"],
        "export": {"kind": kind, "run_id": source.run["id"], "checkpoint_id": source.checkpoint["id"],
                   "step": source.checkpoint["step"], "app": provenance["app"]},
        "lineage": [r["run_id"] for r in provenance["runs"]],
        "stages": [{"run_id": s["run_id"], "stage": s["stage"], "status": s["status"], "config": s["config"]}
                   for s in stages],
        "data_counts": {f"run_{s['run_id']}_{s['stage']}": s["data"]["rows"] for s in stages},
        "final_metrics": {f"run_{s['run_id']}_{s['stage']}": s["final_metrics"] for s in stages},
    }
    header = yaml.safe_dump(json.loads(json.dumps(front, default=str)), sort_keys=False, allow_unicode=True)
    (folder / CARD_FILE).write_text(f"---\n{header}---\n\n{_card_body(source, kind, provenance)}", encoding="utf-8")


def _tags(source: ExportSource, kind: str, provenance: dict[str, Any]) -> list[str]:
    tags = ["rlhf-desktop", "rlhf"]
    for run in provenance["runs"]:
        if run["stage"] not in tags:
            tags.append(run["stage"])
    if source.task == "reward":
        tags.append("reward-model")
    tags.append({"merged": "merged-lora" if source.fmt == "lora" else "full-fine-tune",
                 "adapter": "lora", "reward": "sequence-classification"}[kind])
    return tags


_LOAD_SNIPPETS = {
    "merged": ("from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
               "tok = AutoTokenizer.from_pretrained(FOLDER)\n"
               "model = AutoModelForCausalLM.from_pretrained(FOLDER)\n"
               "ids = tok.apply_chat_template([{{\"role\": \"user\", \"content\": \"Hello!\"}}],\n"
               "                              add_generation_prompt=True, return_tensors=\"pt\", return_dict=True)\n"
               "out = model.generate(**ids, max_new_tokens=64)\n"
               "print(tok.decode(out[0, ids[\"input_ids\"].shape[1]:], skip_special_tokens=True))"),
    "adapter": ("from peft import PeftModel\n"
                "from transformers import {auto}, AutoTokenizer\n\n"
                "base = {auto}.from_pretrained(BASE{extra})  # {base_path}\n"
                "model = PeftModel.from_pretrained(base, FOLDER)\n"
                "tok = AutoTokenizer.from_pretrained(FOLDER)"),
    "reward": ("import torch\n"
               "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
               "tok = AutoTokenizer.from_pretrained(FOLDER)\n"
               "model = AutoModelForSequenceClassification.from_pretrained(FOLDER)\n"
               "chat = [{{\"role\": \"user\", \"content\": PROMPT}},\n"
               "        {{\"role\": \"assistant\", \"content\": RESPONSE}}]\n"
               "ids = tok.apply_chat_template(chat, return_tensors=\"pt\", return_dict=True)\n"
               "with torch.no_grad():\n"
               "    reward = model(**ids).logits[0, 0].item()"),
}


def _card_body(source: ExportSource, kind: str, provenance: dict[str, Any]) -> str:
    run, ckpt = source.run, source.checkpoint
    title = {"merged": "merged model", "adapter": "LoRA adapter", "reward": "reward model"}[kind]
    auto = "AutoModelForSequenceClassification" if source.task == "reward" else "AutoModelForCausalLM"
    snippet = _LOAD_SNIPPETS[kind].format(auto=auto, extra=", num_labels=1" if source.task == "reward" else "",
                                          base_path=provenance["base_model"]["path"])
    lines = [f"# {provenance['base_model']['name']}: {run['stage'].upper()} run {run['id']}, step {ckpt['step']} "
             f"({title})", "",
             f"Exported by {provenance['app']} on {provenance['exported_at']} from checkpoint {ckpt['id']} "
             f"of run {run['id']} ({run['stage']}).", "",
             "## Loading", "", "```python", snippet, "```", ""]
    if kind == "adapter":
        lines += [f"`adapter_config.json` names the base model by its folder at export time "
                  f"(`{provenance['base_model']['path']}`); on another machine pass your copy of "
                  f"`{provenance['base_model']['name']}` as `BASE`.", ""]
    if run["stage"] == "ppo":
        lines += ["The PPO value head is not part of the export (it is only used during training).", ""]
    lines += ["## Lineage", "", "| run | stage | status | data rows | final metrics |", "|---|---|---|---|---|"]
    stages = provenance["runs"] + ([provenance["reward_run"]] if provenance["reward_run"] else [])
    for s in stages:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in list(s["final_metrics"].items())[:6])
        role = " (reward model)" if s is provenance["reward_run"] else ""
        lines.append(f"| {s['run_id']} | {s['stage']}{role} | {s['status']} | {s['data']['rows']} | {shown} |")
    lines += ["", "Every run's full config, data hash and checkpoints are in `lineage.json`.", ""]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- the target folder: checks, staging, atomic publish --------------------------------------
def _looks_replaceable(target: Path) -> bool:
    """An existing target we may replace: an empty folder, a model folder or an earlier export."""
    if target.is_file() or target.is_symlink():
        return False
    names = {p.name for p in target.iterdir()}
    return not names or any(m in names for m in _MODEL_MARKERS)


def _check_target(target: Path, overwrite: bool, project_dir: Path, checkpoint_dir: Path) -> None:
    if target == project_dir or target in project_dir.parents:
        raise ExportError("the export would replace the project folder", where=str(target),
                          hint="choose a new folder (e.g. under the project's exports/ folder)")
    checkpoint_dir = checkpoint_dir.resolve()
    if checkpoint_dir == target or checkpoint_dir in target.parents or target in checkpoint_dir.parents:
        raise ExportError("the export cannot replace or go inside the checkpoint it exports", where=str(target),
                          hint="choose a folder outside the checkpoint")
    if not target.exists() and not target.is_symlink():
        return
    if target.is_dir() and not any(target.iterdir()):
        return
    if not overwrite:
        raise ExportError("the target already exists", where=str(target),
                          hint="choose another folder, or allow overwriting (--overwrite)")
    if not _looks_replaceable(target):
        raise ExportError("the target exists and is neither a model folder nor an earlier export; "
                          "it will not be replaced", where=str(target), hint="choose a new or empty folder")


@contextlib.contextmanager
def _staging(target: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success move it into place, on failure remove it."""
    created = _missing_parents(target)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            yield tmp
            _publish(tmp, target, overwrite)
        except BaseException as exc:
            mapped = _user_error(exc, target)
            if mapped is not None:
                raise mapped from None
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.exists():
            for folder in created:  # innermost first; only the ones this export created, only if empty
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _missing_parents(target: Path) -> list[Path]:
    missing = []
    parent = target.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    return missing


def _publish(tmp: Path, target: Path, overwrite: bool) -> None:
    if not target.exists() and not target.is_symlink():
        os.replace(tmp, target)
        return
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
        os.replace(tmp, target)
        return
    if not overwrite:  # appeared while we were writing
        raise ExportError("the target already exists", where=str(target),
                          hint="choose another folder, or allow overwriting (--overwrite)")
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _check_space(folder: Path, needed: int, target: Path) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise ExportError(f"not enough disk space: the export needs about {needed / 1e6:.0f} MB, "
                          f"{free / 1e6:.0f} MB are free", where=str(target),
                          hint="free some space or choose a folder on another drive")


def _estimate_bytes(source: ExportSource, kind: str) -> int:
    """Roughly what the export writes: the adapter's files, or the base model's weights."""
    if kind == "adapter":
        files = [p for p in source.folder.iterdir() if p.is_file() and p.name not in _TRAINING_ONLY]
    else:
        files = list(source.base.glob("*.safetensors")) + list(source.base.glob("tokenizer*"))
    return sum(p.stat().st_size for p in files) + 1_000_000


def _errno_of(exc: BaseException) -> int | None:
    """The errno behind an exception, also when a library wrapped it (safetensors writes 'code: 28')."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, OSError) and current.errno is not None:
            return current.errno
        text = str(current)
        for code in (*_DISK_FULL, *_NO_PERMISSION):
            if f"code: {code}," in text or f"[Errno {code}]" in text:
                return code
        if "No space left" in text or "StorageFull" in text:
            return errno.ENOSPC
        if "Permission denied" in text or "PermissionDenied" in text:
            return errno.EACCES
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def _user_error(exc: BaseException, target: Path) -> UserError | None:
    """A clear UserError for disk-full and permission failures (None: not one of those)."""
    if isinstance(exc, UserError):
        return None
    code = _errno_of(exc)
    if code in _DISK_FULL:
        return ExportError("the disk is full: the export could not be written (nothing was left behind)",
                           where=str(target.parent), hint="free some space or choose a folder on another drive")
    if code in _NO_PERMISSION:
        return ExportError("no permission to write here (nothing was left behind)", where=str(target.parent),
                           hint="choose a folder you can write to")
    return None
