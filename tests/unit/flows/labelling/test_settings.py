"""Labelling settings and the Label Studio labelling config generated from the class names."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.labelling.settings import (
    LabellingConfigError,
    label_config_xml,
    load_labelling_settings,
)
from tests.support.paths import ROOT


def test_the_committed_labelstudio_xml_is_generated_from_the_configured_classes() -> None:
    settings = load_labelling_settings(ROOT / "configs/labelling.yaml", {})
    assert settings.classes == ("nut", "washer", "bolt")
    assert (ROOT / "configs/labelstudio.xml").read_text() == label_config_xml(settings.classes)


def test_labels_appear_in_class_id_order_with_hotkeys_and_names_escaped() -> None:
    xml = label_config_xml(["nut", "washer", 'odd "one" <&>'])
    assert xml.index('value="nut"') < xml.index('value="washer"')
    assert 'hotkey="1"' in xml and 'hotkey="3"' in xml
    assert "value='odd \"one\" &lt;&amp;&gt;'" in xml
    assert '<RectangleLabels name="label" toName="image"' in xml
    assert '<Image name="image" value="$image"' in xml


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "labelling.yaml"
    config.write_text("fleet: west\nselection: {budget: 7}\nlabelstudio: {url: http://a}\n")
    env = {"EDGELOOP_LABELSTUDIO_URL": "http://b", "EDGELOOP_LABELSTUDIO_TOKEN": "tok"}
    settings = load_labelling_settings(config, env, selection__budget=3, ledger=None)
    assert settings.fleet == "west" and settings.selection.budget == 3
    assert settings.labelstudio.url == "http://b"
    assert settings.labelstudio.require_token() == "tok"
    assert "tok" not in repr(settings)
    assert settings.project_title == "edgeloop west"


@pytest.mark.parametrize(("text", "flags", "message"), [
    ("selection: {budgett: 3}\n", {}, r"unknown settings selection\.budgett"),
    ("colour: red\n", {}, r"unknown settings colour"),
    ("selection: {budget: 0}\n", {}, "budget=0 must be >= 1"),
    ("classes: [nut, nut]\n", {}, "must be distinct"),
    ("fleet: ../up\n", {}, "must be a name"),
    ("collection: {dataset_dir: /abs}\n", {}, "must be a path inside the repo"),
    ("- a list\n", {}, "must hold a mapping"),
    ("", {"nosuch__key": 1}, "unknown settings nosuch"),
])
def test_bad_settings_are_refused_naming_the_key(tmp_path: Path, text: str, flags: dict,
                                                 message: str) -> None:
    config = tmp_path / "labelling.yaml"
    config.write_text(text)
    with pytest.raises(LabellingConfigError, match=message):
        load_labelling_settings(config, {}, **flags)


def test_missing_tokens_are_named() -> None:
    settings = load_labelling_settings(None, {})
    with pytest.raises(LabellingConfigError, match="EDGELOOP_LABELSTUDIO_TOKEN"):
        settings.labelstudio.require_token()
    with pytest.raises(LabellingConfigError, match="EDGELOOP_ADMIN_TOKEN"):
        settings.require_hub_token()
