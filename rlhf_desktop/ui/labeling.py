"""The labeling view: a prompt, two candidate responses side by side, and a keyboard-first choice.

Keys: 1 / Left = left better, 2 / Right = right better, 3 / T = tie, 4 / B = both bad, S = skip,
E = edit a response (it becomes a demonstration and wins), N = note, Ctrl+Z = undo (repeatable),
Shift + a choice = much better. With several criteria (set beside the guidelines), each pair gets
one choice per criterion; they are committed together, before the next pair is shown, which comes
from the candidate queue already generated and stored.
"""

from __future__ import annotations

import collections
import datetime
import time
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QCoreApplication, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QDialog, QHBoxLayout, QLabel, QPushButton, QSplitter, QStackedWidget, QTextBrowser,
                               QVBoxLayout, QWidget)

from rlhf_desktop.modeling.pairs import ReadyPair, load_pair_settings, save_pair_settings
from rlhf_desktop.ui.candidate_queue import CandidateQueue, PairSettingsDialog
from rlhf_desktop.ui.errors import show_error
from rlhf_desktop.ui.guidelines import GuidelinesPanel, load_criteria
from rlhf_desktop.ui.labeling_dialogs import EditDialog, NoteDialog

# action -> key sequences; Shift+digit also arrives as the shifted symbol on US/UK layouts
KEYS: dict[str, tuple[str, ...]] = {
    "left": ("1", "Left"), "right": ("2", "Right"),
    "left!": ("Shift+1", "!", "Shift+Left"), "right!": ("Shift+2", "@", '"', "Shift+Right"),
    "tie": ("3", "T"), "both_bad": ("4", "B"), "skipped": ("S",),
    "edit": ("E",), "note": ("N",), "undo": ("Ctrl+Z",),
}
PACE_WINDOW_S = 300.0


@dataclass
class _Shown:
    """What the view shows: the pair, the choices made so far (one per criterion), the pending note."""

    pair: ReadyPair
    shown_at: float
    choices: dict[str, tuple[str, int]]
    note: str = ""


class _ResponsePane(QWidget):
    """One side: a header with its key, the response (markdown, scrolling on its own), a button."""

    def __init__(self, title: str, button_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.header = QLabel(title)
        self.header.setObjectName("responseHeader")
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.button = QPushButton(button_text)
        self.button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.header)
        box.addWidget(self.browser, 1)
        box.addWidget(self.button)


class LabelingView(QWidget):
    """Pairwise labeling over the project's candidate queue (state: the shell's AppState, optional)."""

    sig_labeled = Signal(object)
    """Labels were committed: the list of new comparison ids."""
    sig_pair_shown = Signal(object)
    """A pair is on screen now (the ReadyPair), or None while waiting for the queue."""

    def __init__(self, state: Any = None, parent: QWidget | None = None, *, queue: CandidateQueue | None = None):
        super().__init__(parent)
        self.setObjectName("labelingView")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.state = state
        self.project = None
        self.loaded: Any = None
        self.queue = queue or CandidateQueue(self)
        self.current: _Shown | None = None
        self.criteria: list[str] = []
        self.stats = {"today": 0, "total": 0, "left": 0, "right": 0}
        self._day = datetime.date.today()
        self._label_times: collections.deque[float] = collections.deque()
        self._session_start = time.monotonic()
        self._history: list[tuple[list[int], ReadyPair]] = []  # labels of this session, for undo
        self.waiting_since: float | None = None
        self.waited_s = 0.0  # total time the operator waited for a pair (benchmark figure)
        self._build()
        self._bind_keys()
        self.queue.sig_pair_arrived.connect(self._on_pair_arrived)
        self.queue.sig_depth_changed.connect(lambda _n: self._update_counters())
        self.queue.sig_status.connect(self._on_queue_status)
        self.queue.sig_failed.connect(lambda info: show_error(self, info))
        self._clock = QTimer(self)
        self._clock.setInterval(15_000)
        self._clock.timeout.connect(self._update_counters)
        self._clock.start()
        if state is not None:
            state.sig_project_changed.connect(self.set_project)
            state.sig_model_changed.connect(self.set_model)
            self.set_project(state.project)
            self.set_model(state.model)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self._refresh_page()

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        self.counters = QLabel()
        self.counters.setObjectName("labelingCounters")
        self.queue_status = QLabel()
        self.settings_button = self._button("Settings…", self.edit_settings, "Pair generation settings")
        self.guide_button = self._button("Guidelines", self.toggle_guidelines, "Show or hide the guidelines")
        self.guide_button.setCheckable(True)
        top = QHBoxLayout()
        top.addWidget(self.counters, 1)
        top.addWidget(self.queue_status)
        top.addWidget(self.settings_button)
        top.addWidget(self.guide_button)
        self.criterion_label = QLabel()
        self.criterion_label.setObjectName("criterionBanner")
        self.prompt_view = QTextBrowser()
        self.prompt_view.setObjectName("promptView")
        self.left = _ResponsePane("<b>Left</b> &nbsp;<small>1 or ←</small>", "Left is better  (1)")
        self.right = _ResponsePane("<b>Right</b> &nbsp;<small>2 or →</small>", "Right is better  (2)")
        self.left.button.clicked.connect(lambda: self.choose("left", self._shift_held()))
        self.right.button.clicked.connect(lambda: self.choose("right", self._shift_held()))
        sides = QSplitter(Qt.Orientation.Horizontal)
        sides.addWidget(self.left)
        sides.addWidget(self.right)
        column = QSplitter(Qt.Orientation.Vertical)
        column.addWidget(self.prompt_view)
        column.addWidget(sides)
        column.setStretchFactor(0, 1)
        column.setStretchFactor(1, 4)
        self.message = QLabel()
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.starter_button = self._button("Load the starter prompts", self.load_starter, "")
        empty = QWidget()
        empty_box = QVBoxLayout(empty)
        empty_box.addStretch(1)
        empty_box.addWidget(self.message)
        empty_box.addWidget(self.starter_button, 0, Qt.AlignmentFlag.AlignCenter)
        empty_box.addStretch(1)
        self.pages = QStackedWidget()
        self.pages.addWidget(column)
        self.pages.addWidget(empty)
        self.guidelines = GuidelinesPanel()
        self.guidelines.sig_criteria_changed.connect(self._on_criteria_changed)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(self.pages)
        self.split.addWidget(self.guidelines)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 1)
        self.note_label = QLabel()
        self.note_label.setObjectName("pendingNote")
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.criterion_label)
        layout.addWidget(self.split, 1)
        layout.addWidget(self.note_label)
        layout.addLayout(self._action_row())

    def _button(self, text: str, slot: Any, tip: str) -> QPushButton:
        button = QPushButton(text)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys always reach the view's shortcuts
        button.setToolTip(tip)
        button.clicked.connect(lambda _=False: slot())
        return button

    def _action_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.action_buttons: list[QPushButton] = []
        for text, slot, tip in (("Tie  (3)", lambda: self.choose("tie"), "About equally good"),
                                ("Both bad  (4)", lambda: self.choose("both_bad"), "Neither is acceptable"),
                                ("Skip  (S)", lambda: self.choose("skipped"), "Do not judge this pair"),
                                ("Edit…  (E)", self.edit_response, "Rewrite a response: it becomes the preferred one"),
                                ("Note…  (N)", self.edit_note, "Attach a note to this pair's label"),
                                ("Undo  (Ctrl+Z)", self.undo, "Take back the last label")):
            button = self._button(text, slot, tip)
            self.action_buttons.append(button)
            row.addWidget(button)
        return row

    def _bind_keys(self) -> None:
        actions = {"left": lambda: self.choose("left"), "right": lambda: self.choose("right"),
                   "left!": lambda: self.choose("left", True), "right!": lambda: self.choose("right", True),
                   "tie": lambda: self.choose("tie"), "both_bad": lambda: self.choose("both_bad"),
                   "skipped": lambda: self.choose("skipped"), "edit": self.edit_response,
                   "note": self.edit_note, "undo": self.undo}
        self.shortcuts: list[QShortcut] = []
        for name, keys in KEYS.items():
            for key in keys:
                shortcut = QShortcut(QKeySequence(key), self)
                shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
                shortcut.activated.connect(actions[name])
                self.shortcuts.append(shortcut)

    @staticmethod
    def _shift_held() -> bool:
        from PySide6.QtWidgets import QApplication

        return bool(QApplication.keyboardModifiers() & Qt.KeyboardModifier.ShiftModifier)

    # -- project and model --------------------------------------------------------------------
    @Slot(object)
    def set_project(self, project: Any) -> None:
        self.project = project
        self.current = None
        self._history.clear()
        self.guidelines.set_project(project)
        visible = bool(project.get_setting("ui.guidelines_visible", True)) if project is not None else True
        self.guidelines.setVisible(visible)
        self.guide_button.setChecked(visible)
        self.criteria = load_criteria(project) if project is not None else []
        self.refresh_stats()
        self._restart_queue()

    @Slot(object)
    def set_model(self, loaded: Any) -> None:
        self.loaded = loaded  # a pair on screen stays: it is stored and still worth a label
        self._restart_queue()

    def _restart_queue(self) -> None:
        folder = self.project.folder if self.project is not None else None
        settings = None
        if self.project is not None:
            try:
                settings = load_pair_settings(self.project)
            except Exception as exc:  # noqa: BLE001 - a bad stored setting is shown, defaults are used
                show_error(self, exc)
        self.queue.configure(folder, self.loaded, settings)
        self._refresh_page()

    @Slot()
    def shutdown(self) -> None:
        """Stop the queue's worker (the app is closing)."""
        self.queue.stop()

    # -- showing pairs ------------------------------------------------------------------------
    def _refresh_page(self) -> None:
        if self.current is None and self.project is not None and self.loaded is not None:
            self._advance()
            return
        self._update_page()

    def _update_page(self) -> None:
        self.starter_button.setVisible(False)
        for button in self.action_buttons[:-1]:  # undo stays: it can bring back the last pair
            button.setEnabled(self.current is not None)
        if self.current is not None:
            self.pages.setCurrentIndex(0)
        else:
            self.pages.setCurrentIndex(1)
            self.message.setText(self._empty_message())
        self._update_criterion()
        self._update_counters()

    def _empty_message(self) -> str:
        if self.project is None:
            return "Open or create a project (File menu) to start labeling."
        has_prompts = self.project.conn.execute("SELECT count(*) FROM prompts WHERE split = 'train'").fetchone()[0]
        if not has_prompts:
            self.starter_button.setVisible(True)
            return "This project has no prompts to label yet. Import some (File menu) or load the starter set."
        if self.loaded is None:
            return "Load a model (Model menu) to generate candidate pairs."
        if self.queue.status.startswith("no prompts"):
            return "Every train prompt has its pairs. Import more prompts to keep labeling."
        return "Generating the next pair…"

    def _advance(self) -> None:
        """Show the next ready pair, or wait for the queue."""
        pair = self.queue.pop()
        if pair is None:
            self.current = None
            if self.waiting_since is None and self.project is not None and self.loaded is not None:
                self.waiting_since = time.monotonic()
            self._update_page()
            self.sig_pair_shown.emit(None)
            return
        self.show_pair(pair)

    def show_pair(self, pair: ReadyPair, choices: dict[str, tuple[str, int]] | None = None, note: str = "") -> None:
        if self.waiting_since is not None:
            self.waited_s += time.monotonic() - self.waiting_since
            self.waiting_since = None
        self.current = _Shown(pair, time.monotonic(), dict(choices or {}), note)
        self.queue.mark_shown(pair)
        self.prompt_view.setMarkdown(pair.prompt)
        self.left.browser.setMarkdown(pair.left_text)
        self.right.browser.setMarkdown(pair.right_text)
        self.note_label.setText(f"Note: {note}" if note else "")
        self._update_page()
        self.sig_pair_shown.emit(pair)

    @Slot()
    def _on_pair_arrived(self) -> None:
        if self.current is None and self.project is not None:
            self._advance()
        else:
            self._update_counters()

    @Slot(str)
    def _on_queue_status(self, text: str) -> None:
        self.queue_status.setText(f"<small>generator: {text}</small>")
        if self.current is None:
            self._update_page()

    # -- labeling -----------------------------------------------------------------------------
    @Slot()
    def choose(self, outcome: str, much: bool = False) -> None:
        """Judge the shown pair (for the current criterion); commits once every criterion has a choice."""
        shown = self.current
        if shown is None or self.project is None:
            return
        strength = 2 if much and outcome in ("left", "right") else 1
        criteria = self.criteria or [""]
        if outcome == "skipped":  # a skip covers the whole pair
            shown.choices = {c: ("skipped", 1) for c in criteria}
        else:
            shown.choices[criteria[len(shown.choices)]] = (outcome, strength)
        if len(shown.choices) < len(criteria):
            self._update_criterion()
            return
        self._commit(shown)

    def _commit(self, shown: _Shown) -> None:
        from rlhf_desktop.store.labels import record_labels

        pair = shown.pair
        duration = int((time.monotonic() - shown.shown_at) * 1000)
        try:
            ids = record_labels(self.project, pair.prompt_id, pair.left_id, pair.right_id,
                                {c: o for c, (o, _) in shown.choices.items()},
                                strength={c: s for c, (_, s) in shown.choices.items()}, note=shown.note,
                                duration_ms=duration, source="label", strategy=pair.strategy)
        except Exception as exc:  # noqa: BLE001 - nothing was written; the pair stays on screen
            shown.choices.clear()
            show_error(self, exc)
            self._update_criterion()
            return
        self._history.append((ids, pair))
        self._count([o for o, _ in shown.choices.values()], +1, pair.strategy)
        self.queue.note_activity()
        self._advance()  # committed above: only now does the next pair appear
        self.sig_labeled.emit(ids)

    def _count(self, outcomes: list[str], sign: int, strategy: str | None = None) -> None:
        self.stats["today"] += sign
        self.stats["total"] += sign
        if strategy:
            by_strategy = self.stats.setdefault("by_strategy", {})
            by_strategy[strategy] = by_strategy.get(strategy, 0) + sign * len(outcomes)
        for outcome in outcomes:
            if outcome in ("left", "right"):
                self.stats[outcome] += sign
        if sign > 0:
            self._label_times.append(time.monotonic())
        elif self._label_times:
            self._label_times.pop()

    @Slot()
    def undo(self) -> None:
        """Take back the newest label (repeatable) and show its pair again; within a pair, the last criterion."""
        if self.project is None:
            return
        if self.current is not None and self.current.choices:
            self.current.choices.popitem()
            self._update_criterion()
            return
        from rlhf_desktop.store.labels import undo_last_label

        before = self._peek_last_pair()
        row = undo_last_label(self.project, source="label")
        if row is None:
            self.queue_status.setText("<small>nothing to undo</small>")
            return
        deleted = row.get("deleted_ids", [row["id"]])
        pair = self._history.pop()[1] if self._history and self._history[-1][0] == deleted else before
        self._count([row["outcome"]] * len(deleted), -1)
        self.refresh_stats()
        if pair is None:
            return
        if self.current is not None:
            self.queue.push_front(self.current.pair)
        self.show_pair(pair, note=row.get("note", ""))

    def _peek_last_pair(self) -> ReadyPair | None:
        """The pair behind the newest label as it was shown (an edited side maps back to its original)."""
        from rlhf_desktop.store.labels import get_response

        rows = self.project.query("SELECT * FROM comparisons WHERE source = 'label' ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        row = rows[0]
        sides = []
        for rid in (row["left_id"], row["right_id"]):
            response = get_response(self.project, rid)
            original = response["gen_config"].get("edited_from") if response["origin"] == "edited" else None
            sides.append(get_response(self.project, original) if original else response)
        prompt = self.project.query("SELECT text FROM prompts WHERE id = ?", [row["prompt_id"]])[0]["text"]
        key = sides[0]["gen_config"].get("pair", "")
        return ReadyPair(row["prompt_id"], prompt, sides[0]["id"], sides[0]["text"], sides[1]["id"], sides[1]["text"],
                         pair_key=key, model=sides[0]["model"], strategy=row["strategy"])

    @Slot()
    def edit_response(self) -> None:
        """Rewrite one side: the text becomes a demonstration and a response preferred over the other."""
        shown = self.current
        if shown is None or self.project is None:
            return
        dialog = EditDialog(shown.pair, self)
        accepted = self._run_dialog(dialog)
        if not accepted or not dialog.text().strip():
            return
        from rlhf_desktop.store.labels import edit_as_demonstration

        pair = shown.pair
        try:
            result = edit_as_demonstration(
                self.project, pair.prompt_id, pair.left_id, pair.right_id, dialog.side(), dialog.text(),
                criterion=(self.criteria or [""])[0], note=shown.note, strategy=pair.strategy,
                duration_ms=int((time.monotonic() - shown.shown_at) * 1000))
        except Exception as exc:  # noqa: BLE001 - nothing was written
            show_error(self, exc)
            return
        self._history.append(([result["comparison_id"]], pair))
        self._count([dialog.side()], +1, pair.strategy)
        self.queue.note_activity()
        self._advance()
        self.sig_labeled.emit([result["comparison_id"]])

    def _run_dialog(self, dialog: QDialog) -> bool:
        """Run a modal dialog; afterwards the keys go to this view again. True when accepted."""
        accepted = dialog.exec() == QDialog.DialogCode.Accepted
        self.window().activateWindow()
        self.setFocus()
        return accepted

    @Slot()
    def edit_note(self) -> None:
        """Attach a note to the shown pair's label (committed with it)."""
        if self.current is None:
            return
        dialog = NoteDialog(self.current.note, self)
        if self._run_dialog(dialog):
            self.current.note = dialog.text().strip()
            self.note_label.setText(f"Note: {self.current.note}" if self.current.note else "")

    # -- counters, criteria, settings -----------------------------------------------------------
    def refresh_stats(self) -> None:
        """Re-read today's and total counts and the left/right split from the store."""
        if self.project is None:
            self.stats = {"today": 0, "total": 0, "left": 0, "right": 0, "by_strategy": {}}
        else:
            from rlhf_desktop.store.labels import label_stats

            self._day = datetime.date.today()
            stats = label_stats(self.project)
            by_outcome = stats.get("by_outcome", {})
            self.stats = {"today": stats.get("today", 0), "total": stats.get("total", 0),
                          "left": by_outcome.get("left", 0), "right": by_outcome.get("right", 0),
                          "by_strategy": dict(stats.get("by_strategy", {}))}
        self._update_counters()

    def pace(self) -> float:
        """Labels per minute over the last five minutes of this session."""
        now = time.monotonic()
        while self._label_times and now - self._label_times[0] > PACE_WINDOW_S:
            self._label_times.popleft()
        span = max(min(PACE_WINDOW_S, now - self._session_start), 60.0)
        return len(self._label_times) * 60.0 / span

    def left_rate(self) -> float | None:
        decided = self.stats["left"] + self.stats["right"]
        return self.stats["left"] / decided if decided else None

    def _update_counters(self) -> None:
        if self.project is not None and self._day != datetime.date.today():
            self.refresh_stats()  # "today" starts again at midnight
            return
        rate = self.left_rate()
        bias = "–" if rate is None else f"{100 * rate:.0f}%"
        warn = rate is not None and self.stats["left"] + self.stats["right"] >= 20 and abs(rate - 0.5) > 0.15
        strategies = {k: v for k, v in sorted(self.stats.get("by_strategy", {}).items()) if v > 0}
        by_strategy = ""
        if set(strategies) - {"random"}:  # only worth a place once a second strategy produced labels
            by_strategy = " · By strategy " + ", ".join(f"{k} <b>{v}</b>" for k, v in strategies.items())
        self.counters.setText(
            f"Today <b>{self.stats['today']}</b> · Total <b>{self.stats['total']}</b> · "
            f"Queue <b>{self.queue.depth()}</b> · Pace <b>{self.pace():.1f}</b>/min · "
            f"Left chosen <b>{'<font color=#c0392b>' + bias + '</font>' if warn else bias}</b>{by_strategy}")
        self.counters.setToolTip("Left chosen: how often the left side won among left/right choices; "
                                 "far from 50% suggests a position bias.\nBy strategy: labels per way of "
                                 "choosing pairs (random, uncertainty, disagreement, arena, ...).")

    def _update_criterion(self) -> None:
        if len(self.criteria) > 1 and self.current is not None:
            index = min(len(self.current.choices), len(self.criteria) - 1)
            done = ", ".join(f"{c}: {o}" for c, (o, _) in self.current.choices.items())
            self.criterion_label.setText(f"Criterion {index + 1} of {len(self.criteria)}: "
                                         f"<b>{self.criteria[index]}</b>" + (f" &nbsp; ({done})" if done else ""))
            self.criterion_label.show()
        elif len(self.criteria) == 1:
            self.criterion_label.setText(f"Criterion: <b>{self.criteria[0]}</b>")
            self.criterion_label.show()
        else:
            self.criterion_label.hide()

    @Slot(list)
    def _on_criteria_changed(self, criteria: list) -> None:
        self.criteria = list(criteria)
        if self.current is not None:
            self.current.choices.clear()
        self._update_criterion()

    @Slot()
    def toggle_guidelines(self) -> None:
        visible = not self.guidelines.isVisible()
        self.guidelines.setVisible(visible)
        self.guide_button.setChecked(visible)
        if self.project is not None:
            self.project.set_setting("ui.guidelines_visible", visible)

    @Slot()
    def edit_settings(self) -> None:
        if self.project is None:
            return
        dialog = PairSettingsDialog(self.queue.settings, self)
        if not self._run_dialog(dialog):
            return
        try:
            save_pair_settings(self.project, dialog.result_settings())
        except Exception as exc:  # noqa: BLE001
            show_error(self, exc)
            return
        self._restart_queue()

    @Slot()
    def load_starter(self) -> None:
        from rlhf_desktop.store.prompts import load_starter_prompts

        if self.project is None:
            return
        try:
            load_starter_prompts(self.project)
        except Exception as exc:  # noqa: BLE001
            show_error(self, exc)
            return
        self._restart_queue()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.setFocus()  # the choice keys work as soon as the view is shown
        if self.project is not None and self.loaded is not None and not self.queue.running:
            self._restart_queue()  # it ran out of prompts or failed earlier: new prompts may be there
