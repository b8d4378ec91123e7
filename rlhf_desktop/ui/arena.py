"""The evaluation arena: two models answer held-out prompts in a worker, the operator votes blind, and the
results (rates with 95% intervals, the length-controlled win rate, automatic evaluation) are revealed at
the end with the models' identities.

Keys as in the labeling view: 1 / Left = left better, 2 / Right = right better, 3 / T = tie,
4 / B = both bad, S = skip, Ctrl+Z = undo the last vote. Sides are randomized per prompt and recorded;
each vote is a comparison with source "arena" (see training/evaluation.py), so it can feed the next
reward model.
"""

from __future__ import annotations

import random
import time
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel,
                               QProgressBar, QPushButton, QSpinBox, QSplitter, QStackedWidget, QTableWidget,
                               QTableWidgetItem, QTextBrowser, QVBoxLayout, QWidget)

from rlhf_desktop.core.errors import DataError
from rlhf_desktop.ui.errors import show_error
from rlhf_desktop.ui.jobs import JobRunner

KEYS: dict[str, tuple[str, ...]] = {"left": ("1", "Left"), "right": ("2", "Right"), "tie": ("3", "T"),
                                    "both_bad": ("4", "B"), "skipped": ("S",), "undo": ("Ctrl+Z",)}
SPLITS = (("Held-out prompts", "heldout"), ("Train prompts", "train"), ("All prompts", None))
SETUP, VOTE, RESULTS = range(3)


def arena_job(ctx: Any, folder: str, session_id: str, prompts: list[dict], reward_checkpoint: str | None) -> dict:
    """The worker's job: both models answer, then the automatic evaluation (training.evaluation.run_arena)."""
    from rlhf_desktop.training.evaluation import run_arena

    return run_arena(folder, session_id, prompts, ctx, reward_checkpoint=reward_checkpoint)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


class ArenaView(QWidget):
    """Setup, blind voting, results. `state` is the shell's AppState (optional: call set_project)."""

    sig_results = Signal(object)
    """The session ended: the results dict (training.evaluation.session_results plus `auto`)."""

    def __init__(self, state: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("arenaView")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.project = None
        self.session_id: str | None = None
        self.items: list[dict] = []
        self.index = 0
        self.history: list[tuple[int, int]] = []  # (comparison id, item index) for undo
        self.results: dict | None = None
        self.auto: dict = {}
        self.rng = random.Random()
        self._shown_at = 0.0
        self.runner = JobRunner("arena", self)
        self.runner.sig_progress.connect(self._on_progress)
        self.runner.sig_status.connect(lambda text: self.status.setText(text))
        self.pages = QStackedWidget()
        self.pages.addWidget(self._setup_page())
        self.pages.addWidget(self._vote_page())
        self.pages.addWidget(self._results_page())
        QVBoxLayout(self).addWidget(self.pages)
        self._bind_keys()
        if state is not None:
            state.sig_project_changed.connect(self.set_project)
            self.set_project(state.project)

    # -- pages --------------------------------------------------------------------------------
    def _setup_page(self) -> QWidget:
        page = QWidget()
        self.model_a, self.model_b = QComboBox(), QComboBox()
        self.model_a.setObjectName("arenaModelA")
        self.model_b.setObjectName("arenaModelB")
        self.split_combo = QComboBox()
        for text, split in SPLITS:
            self.split_combo.addItem(text, split)
        self.count_spin = QSpinBox()
        self.count_spin.setRange(1, 1000)
        self.count_spin.setValue(20)
        self.count_spin.setToolTip("How many prompts of the set (a random sample when the set is larger)")
        self.reward_combo = QComboBox()
        self.reward_combo.setToolTip("The reward model whose mean score the automatic evaluation reports")
        self.tokens_spin = QSpinBox()
        self.tokens_spin.setRange(1, 4096)
        self.tokens_spin.setValue(128)
        self.temp_spin = QDoubleSpinBox()
        self.temp_spin.setRange(0.0, 2.0)
        self.temp_spin.setSingleStep(0.1)
        self.temp_spin.setValue(0.7)
        form = QFormLayout()
        form.addRow("Model A", self.model_a)
        form.addRow("Model B", self.model_b)
        form.addRow("Prompt set", self.split_combo)
        form.addRow("Prompts", self.count_spin)
        form.addRow("Reward model", self.reward_combo)
        form.addRow("Max new tokens", self.tokens_spin)
        form.addRow("Temperature", self.temp_spin)
        intro = QLabel("<h3>Evaluation arena</h3>Both models answer the same prompts; you judge each pair without "
                       "knowing which model wrote which side (sides are shuffled). The identities, the win "
                       "rates with 95% confidence intervals and the automatic evaluation appear at the end. "
                       "Your votes are stored as comparisons and feed the next reward model.")
        intro.setWordWrap(True)
        self.start_button = QPushButton("Start the arena")
        self.start_button.setObjectName("arenaStart")
        self.start_button.clicked.connect(self.start_arena)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        box = QVBoxLayout(page)
        box.addWidget(intro)
        box.addLayout(form)
        box.addWidget(self.start_button, 0, Qt.AlignmentFlag.AlignLeft)
        box.addWidget(self.progress)
        box.addWidget(self.status)
        box.addStretch(1)
        return page

    def _vote_page(self) -> QWidget:
        page = QWidget()
        self.counter = QLabel()
        self.counter.setObjectName("arenaCounter")
        self.prompt_view = QTextBrowser()
        self.left_view, self.right_view = QTextBrowser(), QTextBrowser()
        sides = QSplitter(Qt.Orientation.Horizontal)
        for title, view in (("<b>Left</b> <small>1 or ←</small>", self.left_view),
                            ("<b>Right</b> <small>2 or →</small>", self.right_view)):
            pane = QWidget()
            pane_box = QVBoxLayout(pane)
            pane_box.setContentsMargins(0, 0, 0, 0)
            pane_box.addWidget(QLabel(title))
            pane_box.addWidget(view, 1)
            sides.addWidget(pane)
        column = QSplitter(Qt.Orientation.Vertical)
        column.addWidget(self.prompt_view)
        column.addWidget(sides)
        column.setStretchFactor(0, 1)
        column.setStretchFactor(1, 4)
        row = QHBoxLayout()
        for text, outcome in (("Left is better  (1)", "left"), ("Right is better  (2)", "right"), ("Tie  (3)", "tie"),
                              ("Both bad  (4)", "both_bad"), ("Skip  (S)", "skipped")):
            row.addWidget(self._button(text, lambda _=False, o=outcome: self.vote(o)))
        row.addWidget(self._button("Undo  (Ctrl+Z)", lambda _=False: self.undo()))
        box = QVBoxLayout(page)
        box.addWidget(self.counter)
        box.addWidget(column, 1)
        box.addLayout(row)
        return page

    def _results_page(self) -> QWidget:
        page = QWidget()
        self.identities = QLabel()
        self.identities.setObjectName("arenaIdentities")
        self.identities.setWordWrap(True)
        self.verdict = QLabel()
        self.verdict.setObjectName("arenaVerdict")
        self.verdict.setWordWrap(True)
        self.rates_table = QTableWidget(7, 2)
        self.rates_table.setObjectName("arenaRates")
        self.rates_table.setHorizontalHeaderLabels(["Rate", "95% CI"])
        self.auto_table = QTableWidget(4, 2)
        self.auto_table.setObjectName("arenaAuto")
        self.auto_table.setHorizontalHeaderLabels(["Model A", "Model B"])
        for table in (self.rates_table, self.auto_table):
            table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
            table.horizontalHeader().setStretchLastSection(True)
            table.setSizeAdjustPolicy(QTableWidget.SizeAdjustPolicy.AdjustToContents)
        human, auto = QGroupBox("Human votes"), QGroupBox("Automatic evaluation")
        QVBoxLayout(human).addWidget(self.rates_table)
        QVBoxLayout(auto).addWidget(self.auto_table)
        grid = QGridLayout()
        grid.addWidget(human, 0, 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(auto, 0, 1, Qt.AlignmentFlag.AlignTop)
        again = self._button("New arena", lambda _=False: self.new_arena())
        box = QVBoxLayout(page)
        box.addWidget(self.identities)
        box.addWidget(self.verdict)
        box.addLayout(grid)
        box.addWidget(again, 0, Qt.AlignmentFlag.AlignLeft)
        box.addStretch(1)
        return page

    @staticmethod
    def _button(text: str, slot: Any) -> QPushButton:
        button = QPushButton(text)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys always reach the view's shortcuts
        button.clicked.connect(slot)
        return button

    def _bind_keys(self) -> None:
        self.shortcuts: list[QShortcut] = []
        for action, keys in KEYS.items():
            slot = self.undo if action == "undo" else (lambda o=action: self.vote(o))
            for key in keys:
                shortcut = QShortcut(QKeySequence(key), self)
                shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                shortcut.activated.connect(slot)
                self.shortcuts.append(shortcut)

    # -- project and choices ------------------------------------------------------------------
    def set_project(self, project: Any) -> None:
        if self.runner.running:
            self.runner.cancel()
        self.project = project
        self.session_id, self.items, self.history, self.results = None, [], [], None
        self.pages.setCurrentIndex(SETUP)
        self.refresh_choices()

    def refresh_choices(self) -> None:
        """Fill the model and reward-model lists from the project's runs."""
        from rlhf_desktop.training.evaluation import contestants, reward_checkpoints

        for combo in (self.model_a, self.model_b, self.reward_combo):
            combo.clear()
        if self.project is None:
            self.start_button.setEnabled(False)
            self.status.setText("Open a project to start an arena.")
            return
        found = contestants(self.project)
        for entry in found:
            self.model_a.addItem(entry["label"], entry)
            self.model_b.addItem(entry["label"], entry)
        self.model_b.setCurrentIndex(len(found) - 1)  # base vs the newest checkpoint by default
        self.reward_combo.addItem("None", None)
        for entry in reward_checkpoints(self.project):
            self.reward_combo.addItem(entry["label"], entry["path"])
        self.reward_combo.setCurrentIndex(self.reward_combo.count() - 1)
        self.start_button.setEnabled(True)
        self.status.setText("")

    # -- running ------------------------------------------------------------------------------
    def start_arena(self) -> int | None:
        """Create the session and let both models answer in the worker; voting starts when they are done."""
        from rlhf_desktop.training.evaluation import arena_prompts, create_session

        if self.project is None or self.runner.running:
            return None
        a, b = self.model_a.currentData(), self.model_b.currentData()
        if a is None or b is None:
            return None
        if a["spec"] == b["spec"]:
            show_error(self, DataError("model A and model B are the same", where="Model B",
                                       hint="choose two different models or checkpoints"))
            return None
        split = self.split_combo.currentData()
        prompts = arena_prompts(self.project, split, self.count_spin.value(), seed=int(time.time()))
        if not prompts:
            show_error(self, DataError(f"no prompts in the set “{self.split_combo.currentText()}”",
                                       where="Prompt set", hint="choose another set or add prompts first"))
            return None
        sampling = {"max_new_tokens": self.tokens_spin.value(), "temperature": self.temp_spin.value(),
                    "seed": self.rng.randrange(2**31)}
        self.session_id = create_session(self.project, a, b, split, sampling)
        self.start_button.setEnabled(False)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        return self.runner.start("Arena: generating answers", arena_job, str(self.project.folder), self.session_id,
                                 prompts, self.reward_combo.currentData(), on_finished=self._on_answers,
                                 on_failed=self._on_failed, on_cancelled=lambda: self.start_button.setEnabled(True))

    def _on_progress(self, done: float, total: object) -> None:
        if total:
            self.progress.setValue(int(1000 * done / float(total)))

    def _on_failed(self, info: dict) -> None:
        self.start_button.setEnabled(True)
        self.status.setText(f"Failed: {info.get('message', '')}")
        show_error(self, info)

    def _on_answers(self, result: dict) -> None:
        self.start_button.setEnabled(True)
        self.auto = result["auto"]
        self.items = [dict(item, a_left=self.rng.random() < 0.5) for item in result["items"]]
        self.index = 0
        self.history = []
        self.pages.setCurrentIndex(VOTE)
        self.setFocus()
        self._show_item()

    # -- voting -------------------------------------------------------------------------------
    def current(self) -> dict | None:
        return self.items[self.index] if self.pages.currentIndex() == VOTE and self.index < len(self.items) else None

    def _show_item(self) -> None:
        item = self.current()
        if item is None:
            return
        left, right = (item["text_a"], item["text_b"]) if item["a_left"] else (item["text_b"], item["text_a"])
        self.prompt_view.setMarkdown(item["prompt"])
        self.left_view.setMarkdown(left)
        self.right_view.setMarkdown(right)
        self.counter.setText(f"Pair <b>{self.index + 1}</b> of <b>{len(self.items)}</b> · "
                             f"the models stay hidden until the end")
        self._shown_at = time.monotonic()

    def vote(self, outcome: str) -> int | None:
        """Record `outcome` (left, right, tie, both_bad, skipped) for the pair on screen; the comparison id."""
        from rlhf_desktop.training.evaluation import record_vote

        item = self.current()
        if item is None or self.project is None:
            return None
        left, right = (item["id_a"], item["id_b"]) if item["a_left"] else (item["id_b"], item["id_a"])
        duration = int(1000 * (time.monotonic() - self._shown_at))
        comparison = record_vote(self.project, item["prompt_id"], left, right, outcome, duration_ms=duration)
        self.history.append((comparison, self.index))
        self.index += 1
        if self.index >= len(self.items):
            self.show_results()
        else:
            self._show_item()
        return comparison

    def undo(self) -> None:
        """Take back the last vote of this session and show its pair again."""
        from rlhf_desktop.store.labels import delete_label

        if not self.history or self.project is None or self.pages.currentIndex() == SETUP:
            return
        comparison, index = self.history.pop()
        delete_label(self.project, comparison)
        self.index = index
        self.pages.setCurrentIndex(VOTE)
        self._show_item()

    # -- results ------------------------------------------------------------------------------
    def show_results(self) -> dict:
        """Reveal the identities and show the statistics next to the automatic evaluation."""
        from rlhf_desktop.training.evaluation import session_results

        results = session_results(self.project, self.session_id)
        results["auto"] = results["session"].get("auto") or self.auto
        self.results = results
        session, stats, lc = results["session"], results["stats"], results["length_controlled"]
        self.identities.setText(f"<h3>Results</h3><b>Model A</b>: {session['a']['label']} &nbsp;·&nbsp; "
                                f"<b>Model B</b>: {session['b']['label']} &nbsp;·&nbsp; {results['votes']} votes, "
                                f"{results['skipped']} skipped, A shown left {results['a_shown_left']} times")
        self.verdict.setText(self._verdict(stats["decisive_win_rate"]))
        rows = [("A wins", stats["win"]), ("Tie", stats["tie"]), ("Both bad", stats["both_bad"]),
                ("B wins", stats["loss"]), ("A's win rate (ties count ½)", stats["win_rate"]),
                ("A's win rate (decisive votes)", stats["decisive_win_rate"]),
                ("A's length-controlled win rate", {"rate": lc["lc_win_rate"], "ci_low": lc["ci_low"],
                                                    "ci_high": lc["ci_high"]})]
        self.rates_table.setVerticalHeaderLabels([name for name, _ in rows])
        for r, (_name, value) in enumerate(rows):
            self.rates_table.setItem(r, 0, QTableWidgetItem(_pct(value["rate"])))
            self.rates_table.setItem(r, 1, QTableWidgetItem(f"{_pct(value['ci_low'])} – {_pct(value['ci_high'])}"))
        auto = results["auto"]
        metrics = [("Reward model score (mean)", "reward_mean", 3), ("KL from the base (per token)", "kl_mean", 4),
                   ("Response length (tokens)", "length_tokens", 1),
                   ("Response length (characters)", "length_chars", 1)]
        self.auto_table.setVerticalHeaderLabels([name for name, _, _ in metrics])
        for r, (_name, key, digits) in enumerate(metrics):
            for c, side in enumerate(("a", "b")):
                self.auto_table.setItem(r, c, QTableWidgetItem(_num((auto.get(side) or {}).get(key), digits)))
        for table in (self.rates_table, self.auto_table):
            table.resizeColumnsToContents()
            table.horizontalHeader().setStretchLastSection(True)
        self.pages.setCurrentIndex(RESULTS)
        self.sig_results.emit(results)
        return results

    @staticmethod
    def _verdict(decisive: dict) -> str:
        if decisive["rate"] is None:
            return "No decisive votes: no winner."
        ci = f"(A won {_pct(decisive['rate'])} of decisive votes, 95% CI {_pct(decisive['ci_low'])}–" \
             f"{_pct(decisive['ci_high'])})"
        if decisive["ci_low"] > 0.5:
            return f"<b>Model A is better</b> {ci}."
        if decisive["ci_high"] < 0.5:
            return f"<b>Model B is better</b> {ci}."
        return f"No clear winner yet: the interval includes 50% {ci}. More votes narrow it."

    def new_arena(self) -> None:
        self.session_id, self.items, self.history = None, [], []
        self.refresh_choices()
        self.pages.setCurrentIndex(SETUP)
