"""Two worker threads importing transformers and PEFT for the first time at once (the app's model load
and the reward-model report did) must not fail; modeling/stack.py serialises the first import."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, sys, threading
from rlhf_desktop.modeling.stack import import_ml_stack
errors, barrier = [], threading.Barrier(2)

def job(body):
    barrier.wait()  # both threads start importing together, as two jobs started at once do
    try:
        import_ml_stack()  # what every worker thread (ui/jobs.py, the candidate queue) runs first
        body()
    except Exception as exc:
        errors.append(repr(exc))

def peft_side():
    from peft import PeftModel  # noqa: F401 - peft imports transformers.AutoModel at its top

def transformers_side():
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

threads = [threading.Thread(target=job, args=(f,)) for f in (peft_side, transformers_side)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(errors))
"""


def test_concurrent_first_imports_of_the_ml_stack_succeed():
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    for _attempt in range(3):  # without the lock about one fresh process in three failed
        done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == []
