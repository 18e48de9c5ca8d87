"""Labelling settings, read once through the layered loader (`configs.loader`), and the Label
Studio labelling config generated from the model's class names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from configs.loader import SettingsError, build, layered
from flows.labelling.yolo_labels import CONTROL_NAME, IMAGE_NAME

# Distinct colours for the first classes; later ones cycle (Label Studio only needs them apart).
COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
           "#bfef45", "#fabed4", "#469990")


class LabellingConfigError(SettingsError):
    """A labelling setting that cannot work (the message names the key)."""


def _at_least(settings: Any, name: str, low: int) -> None:
    if getattr(settings, name) < low:
        raise LabellingConfigError(f"{name}={getattr(settings, name)} must be >= {low}")


@dataclass(frozen=True)
class LabelStudioSettings:
    url: str = "http://127.0.0.1:8080"
    token: str | None = field(default=None, repr=False)
    # The server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT: frames are written below it and
    # served by Label Studio from a local-files storage registered per project.
    files_root: Path = Path("var/labelstudio/files")

    def require_token(self) -> str:
        if not self.token:
            raise LabellingConfigError("no Label Studio token: set EDGELOOP_LABELSTUDIO_TOKEN "
                                       "or pass --ls-token")
        return self.token


@dataclass(frozen=True)
class SelectionSettings:
    budget: int = 50  # frames sent to the annotators per round
    shortlist_factor: int = 4  # budget x this many of the most uncertain frames are compared
    min_distance: float = 0.15  # looks closer than this are the same frame (labelling_select)
    max_samples: int = 10_000  # kept frames read from the hub per round (newest window)

    def __post_init__(self) -> None:
        _at_least(self, "budget", 1)
        _at_least(self, "shortlist_factor", 1)
        _at_least(self, "max_samples", 1)
        if self.min_distance < 0:
            raise LabellingConfigError(f"selection.min_distance={self.min_distance} must be >= 0")


@dataclass(frozen=True)
class CollectionSettings:
    dataset_dir: str = "data/labelled"  # inside the repository: one DVC-tracked folder a batch
    min_frames: int = 1  # fewer finished frames than this: no new dataset version yet
    push: bool = True  # `dvc push` each new increment to the repository's default remote
    quiet_s: float = 30.0  # webhook: collect once no annotation has arrived for this long

    def __post_init__(self) -> None:
        _at_least(self, "min_frames", 1)
        if self.quiet_s < 0:
            raise LabellingConfigError(f"collection.quiet_s={self.quiet_s} must be >= 0")
        if Path(self.dataset_dir).is_absolute() or ".." in Path(self.dataset_dir).parts:
            raise LabellingConfigError(
                f"collection.dataset_dir={self.dataset_dir!r} must be a path inside the repo")


@dataclass(frozen=True)
class LabellingSettings:
    fleet: str = "line-1"  # one Label Studio project per fleet
    classes: tuple[str, ...] = ("nut", "washer", "bolt")  # the model's names, in class-id order
    ledger: Path = Path("var/labelling/ledger.sqlite")
    hub_url: str = "http://127.0.0.1:8700"
    hub_admin_token: str | None = field(default=None, repr=False)
    labelstudio: LabelStudioSettings = LabelStudioSettings()
    selection: SelectionSettings = SelectionSettings()
    collection: CollectionSettings = CollectionSettings()

    def __post_init__(self) -> None:
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise LabellingConfigError(f"classes {list(self.classes)} must be distinct, >= 1")
        # A folder name, and "edgeloop <fleet>" must fit Label Studio's 50-character title.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", self.fleet):
            raise LabellingConfigError(f"fleet {self.fleet!r} must be a name of at most 41 "
                                       "letters, digits and _.-")

    @property
    def project_title(self) -> str:
        return f"edgeloop {self.fleet}"

    @property
    def project_description(self) -> str:
        return (f"Frames kept by the devices of fleet {self.fleet}, most uncertain first. "
                "Correct the model's boxes: move, resize, relabel, delete, add missed parts. "
                "Submit an empty frame if no part is visible.")

    def require_hub_token(self) -> str:
        if not self.hub_admin_token:
            raise LabellingConfigError("no hub admin token: set EDGELOOP_ADMIN_TOKEN or pass "
                                       "--admin-token")
        return self.hub_admin_token


# environment variable -> setting (dotted: section.key)
ENVIRONMENT = {
    "EDGELOOP_LABELSTUDIO_URL": "labelstudio.url",
    "EDGELOOP_LABELSTUDIO_TOKEN": "labelstudio.token",
    "EDGELOOP_LABELSTUDIO_FILES": "labelstudio.files_root",
    "EDGELOOP_HUB_URL": "hub_url",
    "EDGELOOP_ADMIN_TOKEN": "hub_admin_token",
}


def load_labelling_settings(config: Path | None, environ: Mapping[str, str], *,
                            project: Path | None = None, **flags: Any) -> LabellingSettings:
    """Defaults < packaged `labelling.yaml` < the project's `configs/labelling.yaml` and
    `edgeloop.yaml` (`labelling:`) < the file `config` < the environment < flags given (not
    None). Flags are `section__key` for a section's setting, e.g. `selection__budget=20`."""
    merged = layered("labelling", project=project, config=config, environ=environ,
                     env=ENVIRONMENT, flags={k.replace("__", "."): v for k, v in flags.items()},
                     error=LabellingConfigError)
    return build(LabellingSettings, merged, error=LabellingConfigError)


def label_config_xml(classes: Sequence[str]) -> str:
    """Label Studio's labelling config: rectangles over the task's `image`, one label a class,
    in the model's class order (hotkeys 1..9 follow it)."""
    if not classes:
        raise LabellingConfigError("a labelling config needs at least one class")
    lines = ['<!-- Generated by flows.labelling.settings.label_config_xml from the classes in '
             'configs/labelling.yaml; do not edit. -->',
             '<View>',
             '  <Header value="Correct the model\'s boxes; add missed parts; submit an empty '
             'frame if none is visible."/>',
             f'  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}" zoom="true" '
             'zoomControl="true" rotateControl="false"/>',
             f'  <RectangleLabels name="{CONTROL_NAME}" toName="{IMAGE_NAME}" strokeWidth="2" '
             'canRotate="false">']
    for i, name in enumerate(classes):
        hotkey = f' hotkey="{i + 1}"' if i < 9 else ""
        lines.append(f'    <Label value={quoteattr(name)} '
                     f'background="{COLOURS[i % len(COLOURS)]}"{hotkey}/>')
    lines += ['  </RectangleLabels>', '</View>']
    return "\n".join(lines) + "\n"
