"""Loading a causal LM and its tokenizer: the embedded default, a local HF folder, a `.gguf` file, or a
repo id already in the local Hugging Face cache. Offline unless the user turns the network on;
safetensors only unless pickled weights are allowed; no remote code unless trusted.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.errors import ModelLoadError
from rlhf_desktop.modeling.default_model import DEFAULT_MODEL_NAME, default_model_dir
from rlhf_desktop.modeling.device import choose_device, choose_dtype, dtype_name
from rlhf_desktop.modeling.tokens import align_generation_config, first_line, prepare_tokenizer

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class LoadOptions:
    """How to load: device/dtype ('auto' or a name) and the three explicit opt-ins."""

    device: str = "auto"
    dtype: str = "auto"
    allow_pickle: bool = False  # pickled .bin/.pt weights can run arbitrary code when loaded
    trust_remote_code: bool = False  # a model's own Python code (config auto_map) runs on this machine
    allow_network: bool = False  # otherwise nothing is ever fetched from the Hugging Face Hub


@dataclass
class LoadedModel:
    """A model ready for generation: eval mode, on `device` in `dtype`, with its tokenizer."""

    model: Any
    tokenizer: Any
    name: str
    source: str
    kind: str  # "default" | "hf" | "gguf" | "hub-cache"
    device: str
    dtype: str

    def describe(self) -> str:
        return f"{self.name} · {self.device} · {self.dtype}"


# -- where the model is ---------------------------------------------------------------------------
def resolve_model_path(spec: str | Path, ctx: JobContext | None = None) -> Path:
    """The local folder (or `.gguf` file) that `spec` names: 'default', a path, or a cached repo id."""
    return _resolve(spec, ctx, LoadOptions())[0]


def _resolve(spec: str | Path, ctx: JobContext | None, options: LoadOptions) -> tuple[Path, str, str]:
    """(path, kind, display name) for `spec`."""
    text = str(spec).strip()
    if text == "default":
        return default_model_dir(ctx), "default", DEFAULT_MODEL_NAME
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError("this file is not a model", where=str(path),
                                 hint="choose a model folder (with config.json) or a .gguf file")
        return path, "gguf", path.stem
    if path.is_dir():
        return path, "hf", path.resolve().name
    if _REPO_ID.match(text) and not text.lower().endswith(".gguf"):
        return _from_hub_cache(text, options), "hub-cache", text
    raise ModelLoadError("no such file or folder", where=text,
                         hint="give 'default', a model folder, a .gguf file or a repo id in the local HF cache")


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _from_hub_cache(repo_id: str, options: LoadOptions) -> Path:
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    try:
        folder = snapshot_download(repo_id, cache_dir=cache, local_files_only=not options.allow_network,
                                   ignore_patterns=None if options.allow_pickle else [f"*{s}" for s in PICKLE_SUFFIXES])
    except Exception as exc:  # hub errors are many (offline, gated, missing); all mean "not available here"
        hint = ("download it first, or turn network access on in the load options" if not options.allow_network
                else "check the repo id and your network connection")
        raise ModelLoadError(f"{repo_id!r} is not a folder and is not in the local Hugging Face cache "
                             f"({type(exc).__name__})", where=str(cache), hint=hint) from None
    return Path(folder)


# -- is it a model ---------------------------------------------------------------------------------
def validate_model_folder(path: Path, options: LoadOptions) -> None:
    """Raise ModelLoadError unless `path` is a loadable model folder under `options`."""
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError("not a folder" if path.exists() else "no such folder", where=str(path))
    names = sorted(p.name for p in path.iterdir())
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    pickled = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
    if not has_safetensors and pickled and not options.allow_pickle:
        raise ModelLoadError(
            f"the weights are pickled ({', '.join(pickled[:3])}); loading a pickle can run arbitrary code",
            where=str(path), hint="convert them to safetensors, or allow pickled weights if you trust the source")
    missing = _missing_parts(names, has_safetensors or bool(pickled))
    if missing:
        raise ModelLoadError(f"not a model folder: missing {', '.join(missing)}. Found: {_listing(names)}",
                             where=str(path), hint=_folder_hint(names))
    if not options.trust_remote_code:
        _refuse_remote_code(path)


def _missing_parts(names: list[str], has_weights: bool) -> list[str]:
    missing = []
    if "config.json" not in names:
        missing.append("config.json (the architecture)")
    if not has_weights:
        missing.append("weights (*.safetensors)")
    if not any(n in names for n in TOKENIZER_FILES):
        missing.append("a tokenizer (tokenizer.json or tokenizer_config.json)")
    return missing


def _listing(names: list[str], limit: int = 10) -> str:
    if not names:
        return "nothing (the folder is empty)"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _folder_hint(names: list[str]) -> str:
    if "adapter_config.json" in names:
        return "this is a LoRA adapter folder: load its base model, or export a merged model"
    if any(n.endswith(".gguf") for n in names):
        return "this folder holds a .gguf file: choose the file itself"
    return "choose the folder that holds config.json, the weights and the tokenizer files"


def _refuse_remote_code(path: Path) -> None:
    for name in ("config.json", "tokenizer_config.json"):
        file = path / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read {name}: {exc}", where=str(file)) from None
        if isinstance(data, dict) and data.get("auto_map"):
            raise ModelLoadError(
                f"this model needs its own Python code ({name} has auto_map), which would run on this machine",
                where=str(file), hint="allow remote code only for a model whose source you trust")


# -- loading ---------------------------------------------------------------------------------------
def load_tokenizer(path: str | Path, options: LoadOptions | None = None):
    """The folder's tokenizer with left padding and a pad token (eos when it has none)."""
    from transformers import AutoTokenizer

    options = options or LoadOptions()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=not options.allow_network,
                                                  trust_remote_code=options.trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load the tokenizer: {first_line(exc)}", where=str(path)) from None
    return prepare_tokenizer(tokenizer)



def load_model(spec: str | Path, options: LoadOptions | None = None, ctx: JobContext | None = None) -> LoadedModel:
    """Load `spec` ('default', a folder, a .gguf file, a cached repo id) for generation."""
    options = options or LoadOptions()
    ctx = ctx or JobContext()
    device = choose_device(options.device)
    dtype = choose_dtype(device, options.dtype)
    path, kind, name = _resolve(spec, ctx, options)
    if kind != "gguf":
        validate_model_folder(path, options)
    ctx.check()
    ctx.status(f"loading {name} on {device} ({dtype_name(dtype)})")
    if kind == "gguf":
        model, tokenizer = _load_gguf(path, dtype)
    else:
        tokenizer = load_tokenizer(path, options)
        model = _load_weights(path, dtype, options)
    ctx.check()
    model.to(device)
    model.eval()
    align_generation_config(model, tokenizer)
    ctx.status(f"loaded {name}")
    return LoadedModel(model, tokenizer, name, str(path), kind, device, dtype_name(dtype))


def _load_gguf(path: Path, dtype):
    from rlhf_desktop.modeling.gguf_io import load_gguf_model, load_gguf_tokenizer

    tokenizer = prepare_tokenizer(load_gguf_tokenizer(path))
    return load_gguf_model(path, dtype), tokenizer


def _load_weights(path: Path, dtype, options: LoadOptions):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, local_files_only=not options.allow_network,
            use_safetensors=True if not options.allow_pickle else None,
            trust_remote_code=options.trust_remote_code)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load the weights: {first_line(exc)}", where=str(path),
                             hint="check that the folder holds a complete causal language model") from None


