"""Import the ML stack (torch, transformers, PEFT and, for training, TRL) once, one thread at a time.

transformers resolves most of its names lazily. Two threads that import it for the first time at
once can see a module that is still half initialised: the app's model load and the reward-model
report, started together, failed with "cannot import name 'AutoModel' from 'transformers'" (PEFT
imports AutoModel at its top). Every worker thread calls `import_ml_stack` before its job; the
first one imports, the others wait for it, and later calls cost a flag check.
"""

from __future__ import annotations

import importlib
import threading

_LOCK = threading.Lock()
_DONE: set[str] = set()

BASE = ("torch", "transformers", "peft")
AUTO_CLASSES = ("AutoConfig", "AutoTokenizer", "AutoModel", "AutoModelForCausalLM",
                "AutoModelForSequenceClassification")
TRAINERS = ("SFTTrainer", "RewardTrainer", "DPOTrainer")


def import_ml_stack(with_trl: bool = False) -> None:
    """Import torch, transformers (its Auto classes resolved) and peft; with_trl adds TRL's trainers."""
    wanted = ("base", "trl") if with_trl else ("base",)
    if all(part in _DONE for part in wanted):
        return
    with _LOCK:
        if "base" not in _DONE:
            for name in BASE:
                importlib.import_module(name)
            transformers = importlib.import_module("transformers")
            for name in AUTO_CLASSES:
                getattr(transformers, name)  # resolves the lazy submodule now, in this thread
            _DONE.add("base")
        if with_trl and "trl" not in _DONE:
            trl = importlib.import_module("trl")
            for name in TRAINERS:
                getattr(trl, name)
            _DONE.add("trl")
