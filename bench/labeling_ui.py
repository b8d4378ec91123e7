"""Labeling benchmark, UI figures: prints its figures, then one JSON object as the last line.

  * keypress to the next pair painted (p50 / p95; target p95 < 30 ms with a ready queue), measured on
    the real LabelingView offscreen: key event -> label committed -> next pair's markdown set ->
    both response panes painted. Once with the generator idle, once while the queue's worker
    generates with SmolLM2 (GIL and CPU contention).
  * SmolLM2 pair generation, seconds per pair: naive (two calls of 256 new tokens), one prompt per
    call (both candidates in one n=2 call, 96 new tokens), and the queue's batch of 8 prompts.
  * a simulated operator labeling one pair every 3 s with the real CandidateQueue and LabelingView:
    the fraction of the session spent waiting for generation (target 0), from an empty queue and
    with a batch of pairs generated beforehand (stored pairs, as `rlhf-desktop generate-pairs` makes).
    Other processes on the machine slow generation down: the load average is recorded.

bench/labeling.py merges `measure_ui(workdir)` (a flat dict) into its JSON line.

    python bench/labeling_ui.py [--model default] [--labels 30] [--interval 3] [--skip-model]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESPONSE_A = """There are a few ways to reverse a list in Python:

1. **`reversed()`** returns an iterator, so nothing is copied:

```python
nums = [1, 2, 3, 4]
for n in reversed(nums):
    print(n)
```

2. **Slicing** makes a reversed copy: `nums[::-1]`.
3. **`list.reverse()`** reverses *in place* and returns `None`.

Pick slicing when you need a new list and `reverse()` when the original may change.
"""
RESPONSE_B = ("You can use the `reverse` method:\n\n```python\nmy_list = ['a', 'b', 'c']\nmy_list.reverse()\n"
              "print(my_list)  # ['c', 'b', 'a']\n```\n\n" +
              "Note that this changes the list itself; `my_list[::-1]` keeps the original and returns a copy. " * 8)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _app():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


def _load(spec: str):
    from rlhf_desktop.modeling.loading import load_model

    return load_model(spec)


def _project_with_prompts(folder: Path, starter: bool = True):
    from rlhf_desktop.store import Project
    from rlhf_desktop.store.prompts import add_prompts, load_starter_prompts

    project = Project.create(folder)
    if starter:
        load_starter_prompts(project)
    else:
        add_prompts(project, [f"Question {i}: how do I reverse a list?" for i in range(400)], split="train")
    return project


# -- keypress to paint -------------------------------------------------------------------------
class _PaintWatch:
    """Notes when both response panes have painted since `arm()`."""

    def __init__(self, view) -> None:
        from PySide6.QtCore import QEvent, QObject

        self.painted: set[int] = set()
        watch = self

        class Filter(QObject):
            def eventFilter(self, obj, event):  # noqa: N802 - Qt override
                if event.type() == QEvent.Type.Paint:
                    watch.painted.add(id(obj))
                return False

        self.filter = Filter()
        self.targets = [view.left.browser.viewport(), view.right.browser.viewport()]
        for target in self.targets:
            target.installEventFilter(self.filter)

    def arm(self) -> None:
        self.painted.clear()

    def done(self) -> bool:
        return all(id(t) in self.painted for t in self.targets)


def measure_keypress_latency(n: int = 150, *, loaded: Any = None, workdir: Path | None = None) -> dict[str, Any]:
    """Keypress -> label committed -> next pair painted, over `n` presses with a ready queue.

    With `loaded`, the view's CandidateQueue generates with it the whole time (its depth is set
    above the ready pairs, so the worker never rests): the figure under generation load.
    """
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from rlhf_desktop.modeling.pairs import PairSettings, ReadyPair, save_pair_settings
    from rlhf_desktop.store.labels import add_response
    from rlhf_desktop.ui.labeling import LabelingView

    app = _app()
    workdir = Path(workdir or tempfile.mkdtemp())
    tag = "busy" if loaded is not None else "idle"
    project = _project_with_prompts(workdir / f"keys-{tag}", starter=False)
    save_pair_settings(project, PairSettings(queue_depth=min(100, n + 40), max_new_tokens=64))
    pairs = []
    for pid in range(1, n + 2):
        a = add_response(project, pid, RESPONSE_A + f"\n\n(variant {pid})", model="bench")
        b = add_response(project, pid, RESPONSE_B + f" ({pid})", model="bench")
        pairs.append(ReadyPair(pid, f"Question {pid}: how do I reverse a list?", a, RESPONSE_A, b, RESPONSE_B))
    view = LabelingView()
    view.resize(1400, 860)
    view.show()
    view.set_project(project)
    if loaded is not None:
        view.set_model(loaded)  # starts the worker, which never reaches its depth
        deadline = time.monotonic() + 120
        while view.queue.status != "generating" and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.01)
    for pair in reversed(pairs):
        view.queue.push_front(pair)
    view.show_pair(view.queue.pop())
    view.activateWindow()
    watch = _PaintWatch(view)
    for _ in range(20):
        app.processEvents()
    times: list[float] = []
    for i in range(n):
        watch.arm()
        start = time.perf_counter()
        QTest.keyClick(view, Qt.Key.Key_1 if i % 2 else Qt.Key.Key_2)
        while not watch.done():
            app.processEvents()
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(0.02)  # an operator never presses faster than this; lets the worker run
    status = view.queue.status
    view.shutdown()
    labels = project.counts()["comparisons"]
    project.close()
    view.deleteLater()
    app.processEvents()
    assert labels == n, f"{labels} labels stored for {n} key presses"
    return {f"keypress_to_paint_{tag}_p50_ms": round(_percentile(times, 0.50), 2),
            f"keypress_to_paint_{tag}_p95_ms": round(_percentile(times, 0.95), 2),
            f"keypress_to_paint_{tag}_max_ms": round(max(times), 2),
            f"keypress_to_paint_{tag}_n": n, **({"keypress_busy_generator_status": status} if loaded else {})}


# -- generation speed ----------------------------------------------------------------------------
QUESTIONS = ["How do I make a cake?", "Explain why the sky is blue.", "Write a haiku about rain.",
             "What is a good way to learn Python?", "Give me three tips for sleeping better.",
             "What is the capital of Australia?", "Summarize the plot of Hamlet.", "How do vaccines work?"]


def measure_pair_generation(loaded: Any) -> dict[str, Any]:
    """Seconds per pair with one torch thread (the queue worker's policy), three ways:
    naive (two separate calls of 256 new tokens), one prompt per call (n=2, 96 tokens), and the
    queue's default batch (8 prompts x n=2 in one call, 96 tokens)."""
    import torch

    from rlhf_desktop.modeling.generation import generate
    from rlhf_desktop.modeling.pairs import PairSettings, make_pairs

    torch.set_num_threads(1)  # per thread: the same policy as the queue's worker thread
    settings = PairSettings()
    generate(loaded, ["Hi"], settings.sampling(), n=1)  # warm-up
    out: dict[str, Any] = {"pair_generation_max_new_tokens": settings.max_new_tokens,
                           "pair_generation_batch": settings.prompts_per_batch}
    naive = dataclasses.replace(settings, max_new_tokens=256)
    start = time.perf_counter()
    generate(loaded, [QUESTIONS[0]], naive.sampling(seed=1), n=1)
    generate(loaded, [QUESTIONS[0]], naive.sampling(seed=2), n=1)
    out["pair_seconds_naive"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    make_pairs(loaded, [QUESTIONS[0]], settings, seed=3)
    out["pair_seconds_one_prompt_per_call"] = round(time.perf_counter() - start, 2)
    batch = QUESTIONS[: settings.prompts_per_batch]
    start = time.perf_counter()
    make_pairs(loaded, batch, settings, seed=4)
    elapsed = time.perf_counter() - start
    out["pair_seconds_queue_batch"] = round(elapsed / len(batch), 2)
    out["pair_batch_call_seconds"] = round(elapsed, 2)
    return out


# -- the simulated operator ---------------------------------------------------------------------
def measure_operator_wait(loaded: Any, *, labels: int = 20, interval_s: float = 3.0, prefill: int = 0,
                          settings: Any = None, workdir: Path | None = None, tag: str = "") -> dict[str, Any]:
    """An operator labels each pair `interval_s` after it appears; report the share of time spent waiting.

    The queue starts when the model is set; `prefill` pairs are generated beforehand (as
    `rlhf-desktop generate-pairs` does), and the clock starts when the first pair is shown
    ("wait_fraction"), or when the model is set ("wait_fraction_with_start").
    """
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from rlhf_desktop.modeling.pairs import PairSettings, fill_pairs, save_pair_settings
    from rlhf_desktop.ui.labeling import LabelingView

    app = _app()
    settings = settings or PairSettings()
    workdir = Path(workdir or tempfile.mkdtemp())
    project = _project_with_prompts(workdir / f"operator{tag}")
    save_pair_settings(project, settings)
    if prefill:
        fill_pairs(project, loaded, prefill, settings, seed=0)
    view = LabelingView()
    view.resize(1200, 800)
    view.show()
    view.set_project(project)
    t_model = time.monotonic()
    view.set_model(loaded)
    while view.current is None:
        app.processEvents()
        time.sleep(0.005)
    t_first = time.monotonic()
    view.waited_s = 0.0
    done = 0
    shown_at = time.monotonic()
    while done < labels:
        app.processEvents()
        if view.current is None:
            time.sleep(0.005)
            continue
        if time.monotonic() - shown_at >= interval_s:
            QTest.keyClick(view, Qt.Key.Key_1 if done % 2 else Qt.Key.Key_2)
            done += 1
            shown_at = time.monotonic()  # the next pair is read from now (or from when it arrives)
            while view.current is None:
                app.processEvents()
                time.sleep(0.005)
            shown_at = time.monotonic()
        else:
            time.sleep(0.01)
    end = time.monotonic()
    waited = view.waited_s
    depth = view.queue.depth()
    view.shutdown()
    project.close()
    view.deleteLater()
    app.processEvents()
    key = f"operator_wait{tag}"
    return {f"{key}_fraction": round(waited / (end - t_first), 4),
            f"{key}_fraction_with_start": round((waited + t_first - t_model) / (end - t_model), 4),
            f"{key}_seconds": round(waited, 2), f"{key}_first_pair_s": round(t_first - t_model, 2),
            f"{key}_labels": labels, f"{key}_interval_s": interval_s, f"{key}_prefill": prefill,
            f"{key}_queue_depth_end": depth, f"{key}_max_new_tokens": settings.max_new_tokens}


def measure_ui(workdir: Path, *, model: str | None = "default", labels: int = 30, interval_s: float = 3.0,
               keypresses: int = 150) -> dict[str, Any]:
    """Every UI figure of the labeling benchmark (printing a line for each); model None: keypresses only."""
    _app()
    results: dict[str, Any] = {"cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}
    results.update(measure_keypress_latency(keypresses, workdir=workdir))
    print(f"keypress -> next pair painted, generator idle: p50 {results['keypress_to_paint_idle_p50_ms']} ms, "
          f"p95 {results['keypress_to_paint_idle_p95_ms']} ms (target p95 < 30 ms)", flush=True)
    if model is None:
        return results
    loaded = _load(model)
    results["model"] = loaded.name
    results.update(measure_keypress_latency(min(keypresses, 60), loaded=loaded, workdir=workdir))
    print(f"keypress -> next pair painted, {loaded.name} generating: p50 {results['keypress_to_paint_busy_p50_ms']} "
          f"ms, p95 {results['keypress_to_paint_busy_p95_ms']} ms (target p95 < 30 ms)", flush=True)
    results.update(measure_pair_generation(loaded))
    print(f"seconds per pair: naive (2 calls x 256 tokens) {results['pair_seconds_naive']} s, one prompt per call "
          f"(n=2, 96 tokens) {results['pair_seconds_one_prompt_per_call']} s, queue batch of "
          f"{results['pair_generation_batch']} prompts {results['pair_seconds_queue_batch']} s "
          f"({results['pair_batch_call_seconds']} s per call)", flush=True)
    for prefill, tag in ((0, ""), (8, "_prefilled")):
        results.update(measure_operator_wait(loaded, labels=labels, interval_s=interval_s, prefill=prefill,
                                             workdir=workdir, tag=tag))
        key = f"operator_wait{tag}"
        print(f"operator every {interval_s} s, {labels} labels, {prefill} pairs pre-generated: waited "
              f"{100 * results[key + '_fraction']:.1f}% of the session after the first pair "
              f"({100 * results[key + '_fraction_with_start']:.1f}% counting the first pair's "
              f"{results[key + '_first_pair_s']} s)", flush=True)
    results["load_average_1m_end"] = round(os.getloadavg()[0], 2)  # other processes slow generation down
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="'default' (SmolLM2-135M-Instruct) or a model folder")
    p.add_argument("--labels", type=int, default=30, help="labels of the simulated operator")
    p.add_argument("--interval", type=float, default=3.0, help="seconds the operator takes per pair")
    p.add_argument("--keypresses", type=int, default=150)
    p.add_argument("--skip-model", action="store_true", help="only the keypress figure with an idle generator")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rlhf-bench-ui-") as tmp:
        results = measure_ui(Path(tmp), model=None if args.skip_model else args.model, labels=args.labels,
                             interval_s=args.interval, keypresses=args.keypresses)
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
