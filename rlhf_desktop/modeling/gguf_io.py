"""Reading a `.gguf` file into a dense transformers model and tokenizer (shared by loading and the default model)."""

from __future__ import annotations

from pathlib import Path

import torch

from rlhf_desktop.core.errors import ModelLoadError
from rlhf_desktop.modeling.tokens import first_line


def load_gguf_tokenizer(path: Path):
    """The tokenizer stored in a `.gguf` file's metadata (chat template included when the file has one)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot read the tokenizer from this GGUF file: {first_line(exc)}", where=str(path),
                             hint="use a GGUF of a supported architecture (llama, qwen2, mistral, ...)") from None


def load_gguf_model(path: Path, dtype: torch.dtype | None = None):
    """A causal LM with every weight dequantized (GgufConfig(dequantize=True), so save_pretrained works)."""
    from transformers import AutoModelForCausalLM, GgufConfig

    try:
        return AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, quantization_config=GgufConfig(dequantize=True),
            dtype=dtype if dtype is not None else "auto", local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load the weights of this GGUF file: {first_line(exc)}", where=str(path),
                             hint="use a GGUF of a supported architecture (llama, qwen2, mistral, ...)") from None



# -- writing ---------------------------------------------------------------------------------------
_LAYER_TENSORS = {  # llama.cpp name -> transformers name, inside block i
    "attn_norm": "input_layernorm", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def _permute_rope(weight, n_head: int):
    """llama.cpp's q/k row order (rotary halves interleaved per head); the reader undoes it."""
    rows = weight.shape[0] // n_head // 2
    return weight.reshape(n_head, 2, rows, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_llama_gguf(model, tokenizer, path: str | Path) -> Path:
    """Write a Llama-architecture causal LM and its BPE tokenizer as an F32 `.gguf` (llama.cpp's layout)."""
    import gguf

    cfg, path = model.config, Path(path)
    if cfg.model_type != "llama":
        raise ModelLoadError(f"only Llama-architecture models can be written as GGUF, not {cfg.model_type!r}",
                             where=str(path))
    writer = gguf.GGUFWriter(str(path), "llama")
    _write_llama_metadata(writer, cfg)
    _write_tokenizer_metadata(writer, tokenizer)
    _write_llama_tensors(writer, model, cfg)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _write_llama_metadata(writer, cfg) -> None:
    import gguf

    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(float((getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", 10000.0)))
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)


def _write_tokenizer_metadata(writer, tokenizer) -> None:
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    special = set(tokenizer.all_special_ids)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([3 if i in special else 1 for _, i in vocab])  # 3: control, 1: normal
    writer.add_token_scores([0.0] * len(vocab))
    writer.add_token_merges(_bpe_merges(tokenizer))
    for token_id, add in ((tokenizer.bos_token_id, writer.add_bos_token_id),
                          (tokenizer.eos_token_id, writer.add_eos_token_id),
                          (tokenizer.pad_token_id, writer.add_pad_token_id)):
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(False)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def _bpe_merges(tokenizer) -> list[str]:
    """The BPE merges as 'a b' strings (none for a byte-level vocabulary without merges)."""
    import json

    model = json.loads(tokenizer.backend_tokenizer.to_str()).get("model", {})
    return [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]


def _write_llama_tensors(writer, model, cfg) -> None:
    sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        prefix = f"model.layers.{i}."
        q, k = sd[prefix + "self_attn.q_proj.weight"], sd[prefix + "self_attn.k_proj.weight"]
        writer.add_tensor(f"blk.{i}.attn_q.weight", _permute_rope(q, cfg.num_attention_heads))
        writer.add_tensor(f"blk.{i}.attn_k.weight", _permute_rope(k, cfg.num_key_value_heads))
        for ours, theirs in _LAYER_TENSORS.items():
            writer.add_tensor(f"blk.{i}.{ours}.weight", sd[f"{prefix}{theirs}.weight"])
    writer.add_tensor("output_norm.weight", sd["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        writer.add_tensor("output.weight", sd["lm_head.weight"])
