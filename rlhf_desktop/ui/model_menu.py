"""The Model menu: load from a folder, a GGUF file or the embedded default, and the load options
(device, dtype and the explicit opt-ins), kept in the app settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMenu, QMessageBox

from rlhf_desktop.core.context import JobContext
from rlhf_desktop.ui import settings

if TYPE_CHECKING:
    from rlhf_desktop.ui.main_window import MainWindow

DEVICES = [("auto", "Automatic (CUDA, then MPS, then CPU)"), ("cpu", "CPU"), ("cuda", "CUDA GPU"),
           ("mps", "Apple MPS")]
DTYPES = [("auto", "Automatic (bf16 on GPU, fp32 on CPU)"), ("float32", "float32"), ("bfloat16", "bfloat16"),
          ("float16", "float16")]
OPT_INS = [
    ("allow_pickle", "Allow pickled weights (.bin, .pt)",
     "Loading a pickle can run arbitrary code: allow it only for models you trust"),
    ("trust_remote_code", "Trust remote code",
     "Runs the Python code that ships with a model: allow it only for models you trust"),
    ("allow_network", "Allow downloads from the Hugging Face Hub",
     "Otherwise models are only loaded from local files and the local cache"),
]


def load_options() -> Any:
    """The LoadOptions the user chose in the Model menu."""
    from rlhf_desktop.modeling.loading import LoadOptions

    return LoadOptions(device=settings.get_value("model/device", "auto", str),
                       dtype=settings.get_value("model/dtype", "auto", str),
                       **{key: settings.get_value(f"model/{key}", False, bool) for key, _, _ in OPT_INS})


CHECKPOINT_PREFIX = "checkpoint:"  # a model spec naming a training checkpoint of the open project


def load_model_job(ctx: JobContext, spec: str, options: Any, project_folder: str | None = None) -> Any:
    """Worker side: load (and for 'default', convert once) the model `spec`.

    "checkpoint:<id>" loads a checkpoint of the project in `project_folder` (a LoRA one merged into its
    base): any checkpoint can so become the model that generates new candidate pairs.
    """
    from rlhf_desktop.modeling.loading import load_model

    ctx.status(f"loading {spec}")
    if spec.startswith(CHECKPOINT_PREFIX):
        from rlhf_desktop.core.errors import ProjectError
        from rlhf_desktop.store import Project
        from rlhf_desktop.training.evaluation import load_contestant

        if project_folder is None:
            raise ProjectError(f"{spec} names a checkpoint, but no project is open",
                               hint="open the project whose run saved it first")
        with Project.open(project_folder) as project:
            return load_contestant(project, spec)
    return load_model(spec, options, ctx=ctx)


def checkpoint_choices(project: Any) -> list[tuple[str, str]]:
    """(label, spec) of every policy checkpoint (SFT, DPO, PPO) of the project, newest run first."""
    from rlhf_desktop.training.evaluation import contestants

    found = [(c["label"], c["spec"]) for c in contestants(project) if c["checkpoint_id"] is not None]
    return list(reversed(found))


def _choice_menu(parent: QMenu, title: str, key: str, choices: list[tuple[str, str]]) -> QMenu:
    menu = parent.addMenu(title)
    group = QActionGroup(menu)
    current = settings.get_value(key, "auto", str)
    for value, text in choices:
        action = menu.addAction(text)
        action.setCheckable(True)
        action.setChecked(value == current)
        action.setData(value)
        action.setStatusTip("Applies to the next model load")
        group.addAction(action)
    group.triggered.connect(lambda action: settings.set_value(key, action.data()))
    return menu


def build_model_menu(window: "MainWindow") -> QMenu:
    """The Model menu for `window` (whose `load_model(spec)` starts the load)."""
    menu = window.menuBar().addMenu("&Model")
    menu.setObjectName("modelMenu")

    def add(text: str, name: str, slot: Callable[[], Any], shortcut: str | None = None, tip: str = "") -> QAction:
        action = menu.addAction(text)
        action.setObjectName(name)
        action.setStatusTip(tip)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        return action

    add("Load Model from &Folder…", "actionLoadFolder", lambda: _load_folder(window), "Ctrl+L",
        "Load a Hugging Face model folder (config.json, safetensors weights, tokenizer)")
    add("Load &GGUF File…", "actionLoadGguf", lambda: _load_gguf(window), "Ctrl+Shift+L",
        "Load a .gguf file (dequantized on load)")
    add("Use &Default Model", "actionDefaultModel", lambda: window.load_model("default"), None,
        "Load the embedded SmolLM2-135M-Instruct (converted once on first use)")
    add("Load &Checkpoint…", "actionLoadCheckpoint", lambda: _load_checkpoint(window), None,
        "Load a checkpoint of one of this project's runs (SFT, DPO or PPO), e.g. to generate the next "
        "candidate pairs with the tuned model")
    add("&Unload Model", "actionUnloadModel", lambda: window.state.set_model(None), None,
        "Release the loaded model's memory")
    menu.addSeparator()
    _choice_menu(menu, "De&vice", "model/device", DEVICES)
    _choice_menu(menu, "D&type", "model/dtype", DTYPES)
    for key, text, tip in OPT_INS:
        action = menu.addAction(text)
        action.setObjectName(f"action_{key}")
        action.setCheckable(True)
        action.setChecked(settings.get_value(f"model/{key}", False, bool))
        action.setStatusTip(tip)
        action.setToolTip(tip)
        action.toggled.connect(lambda on, k=key: settings.set_value(f"model/{k}", bool(on)))
    return menu


def _load_folder(window: "MainWindow") -> None:
    start = settings.get_value("model/last_dir", "", str)
    folder = QFileDialog.getExistingDirectory(window, "Load model from folder", start)
    if folder:
        settings.set_value("model/last_dir", folder)
        window.load_model(folder)


def _load_gguf(window: "MainWindow") -> None:
    start = settings.get_value("model/last_dir", "", str)
    path, _ = QFileDialog.getOpenFileName(window, "Load GGUF file", start, "GGUF models (*.gguf);;All files (*)")
    if path:
        settings.set_value("model/last_dir", str(Path(path).parent))
        window.load_model(path)


def _load_checkpoint(window: "MainWindow") -> None:
    project = window.state.project
    if project is None:
        QMessageBox.information(window, "Load checkpoint", "Open a project first: checkpoints belong to its runs.")
        return
    choices = checkpoint_choices(project)
    if not choices:
        QMessageBox.information(window, "Load checkpoint",
                                "This project has no SFT, DPO or PPO checkpoint yet. Train one in the Train tab.")
        return
    label, ok = QInputDialog.getItem(window, "Load checkpoint", "Checkpoint (LoRA merged into its base):",
                                     [text for text, _ in choices], 0, False)
    if ok and label:
        window.load_model(dict(choices)[label])
