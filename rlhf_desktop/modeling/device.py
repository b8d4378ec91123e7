"""Device and dtype choice: CUDA, then MPS, then CPU; bf16 where the GPU supports it, fp32 on CPU."""

from __future__ import annotations

import torch

from rlhf_desktop.core.errors import ConfigError

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _check_cuda(pref: str) -> str:
    if not torch.cuda.is_available():
        raise ConfigError(f"{pref!r} asked for but no CUDA GPU is available", where="device",
                          hint="use 'auto' or 'cpu', or install a CUDA build of torch")
    index = pref.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
        raise ConfigError(f"{pref!r}: there are {torch.cuda.device_count()} CUDA device(s)", where="device",
                          hint="use 'cuda' or 'cuda:N' with N counted from 0")
    return pref


def choose_device(pref: str = "auto") -> str:
    """The device to run on: `pref` when it is usable, else the best available (CUDA, MPS, CPU)."""
    pref = (pref or "auto").strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    if pref == "cpu":
        return "cpu"
    if pref == "cuda" or pref.startswith("cuda:"):
        return _check_cuda(pref)
    if pref == "mps":
        if not _mps_available():
            raise ConfigError("'mps' asked for but Apple MPS is not available", where="device",
                              hint="use 'auto' or 'cpu'")
        return "mps"
    raise ConfigError(f"unknown device {pref!r}", where="device", hint="use auto, cpu, cuda, cuda:N or mps")


def _mps_supports_bf16() -> bool:
    try:
        torch.ones(1, dtype=torch.bfloat16, device="mps")
    except (RuntimeError, TypeError):
        return False
    return True


def choose_dtype(device: str, pref: str = "auto") -> torch.dtype:
    """The weights' dtype: `pref` when named, else bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""
    pref = (pref or "auto").strip().lower()
    if pref != "auto":
        if pref not in _DTYPES:
            raise ConfigError(f"unknown dtype {pref!r}", where="dtype", hint="use auto, float32, bfloat16 or float16")
        return _DTYPES[pref]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.bfloat16 if _mps_supports_bf16() else torch.float32
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32."""
    return str(dtype).removeprefix("torch.")


def _cuda_index(device: str) -> int:
    index = device.partition(":")[2]
    return int(index) if index.isdigit() else torch.cuda.current_device()


def describe_device(device: str) -> str:
    """A short human label: 'CPU (2 threads)', 'CUDA: NVIDIA H200 (139 GiB)', 'Apple MPS'."""
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(_cuda_index(device))
        return f"CUDA: {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if device == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"


def memory_info(device: str) -> dict[str, int]:
    """Total and free memory in bytes of the device (system RAM for CPU and MPS's unified memory)."""
    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info(_cuda_index(device))
        return {"total_bytes": int(total), "free_bytes": int(free)}
    import psutil

    vm = psutil.virtual_memory()
    return {"total_bytes": int(vm.total), "free_bytes": int(vm.available)}
