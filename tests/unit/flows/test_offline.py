"""The offline switches: set where the user set nothing, never over a user's value or settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flows.offline import (
    OWN_MARK,
    UserSettings,
    find_user_settings,
    offline_environment,
    offline_switches,
    use_offline_environment,
)

VAR = Path("/srv/line-7/var")


def test_a_user_with_nothing_set_gets_every_switch_under_var() -> None:
    switches = offline_switches({}, VAR, UserSettings())
    assert switches == offline_environment(VAR)
    assert switches["PREFECT_HOME"] == "/srv/line-7/var/prefect"
    assert switches["YOLO_CONFIG_DIR"] == "/srv/line-7/var/ultralytics"
    assert switches["MPLCONFIGDIR"] == "/srv/line-7/var/matplotlib"
    assert switches["YOLO_OFFLINE"] == "1" and switches["DVC_NO_ANALYTICS"] == "1"
    assert switches["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_a_value_the_user_exported_is_never_set_even_an_empty_one() -> None:
    environ = {"YOLO_OFFLINE": "0", "DO_NOT_TRACK": "", "YOLO_CONFIG_DIR": "/home/ana/yolo"}
    switches = offline_switches(environ, VAR, UserSettings())
    assert not switches.keys() & environ.keys()
    assert "PREFECT_HOME" in switches and "DVC_NO_ANALYTICS" in switches


@pytest.mark.parametrize("key", ["PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH",
                                 "PREFECT_HOME"])
def test_a_users_prefect_server_or_profile_keeps_their_prefect_home(key) -> None:
    switches = offline_switches({key: "x"}, VAR, UserSettings())
    assert "PREFECT_HOME" not in switches
    assert switches["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"  # theirs do not say otherwise


def test_a_profiles_file_keeps_prefect_home_and_the_settings_its_profile_holds() -> None:
    user = UserSettings(prefect_profile={"PREFECT_API_URL": "http://prefect.line-7:4200/api",
                                         "PREFECT_SERVER_ANALYTICS_ENABLED": "true"})
    switches = offline_switches({}, VAR, user)
    assert "PREFECT_HOME" not in switches
    assert "PREFECT_SERVER_ANALYTICS_ENABLED" not in switches
    assert switches["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "120"


def test_an_empty_profiles_file_still_counts_as_the_users_prefect() -> None:
    assert "PREFECT_HOME" not in offline_switches({}, VAR, UserSettings(prefect_profile={}))


def test_the_users_ultralytics_and_matplotlib_settings_keep_their_folders() -> None:
    switches = offline_switches({}, VAR, UserSettings(ultralytics=True, matplotlib=True))
    assert "YOLO_CONFIG_DIR" not in switches and "MPLCONFIGDIR" not in switches
    assert switches["YOLO_OFFLINE"] == "1" and switches["YOLO_AUTOINSTALL"] == "0"


@pytest.mark.skipif(sys.platform != "linux", reason="the default folders of Linux")
def test_settings_files_are_found_where_each_tool_looks(tmp_path) -> None:
    home = tmp_path / "ana"
    assert find_user_settings({}, home) == UserSettings()
    (home / ".prefect").mkdir(parents=True)
    (home / ".prefect" / "profiles.toml").write_text(
        'active = "line"\n[profiles.line]\nPREFECT_API_URL = "http://p:4200/api"\n'
        '[profiles.ephemeral]\nPREFECT_SERVER_ANALYTICS_ENABLED = "true"\n')
    (home / ".config" / "Ultralytics").mkdir(parents=True)
    (home / ".config" / "Ultralytics" / "settings.json").write_text("{}")
    found = find_user_settings({}, home)
    assert found == UserSettings(prefect_profile={"PREFECT_API_URL": "http://p:4200/api"},
                                 ultralytics=True, matplotlib=False)
    chosen = find_user_settings({"PREFECT_PROFILE": "ephemeral"}, home)
    assert chosen.prefect_profile == {"PREFECT_SERVER_ANALYTICS_ENABLED": "true"}
    moved = find_user_settings({"XDG_CONFIG_HOME": str(tmp_path / "cfg")}, home)
    assert moved.ultralytics is False


def test_a_broken_profiles_file_is_still_the_users(tmp_path) -> None:
    (tmp_path / ".prefect").mkdir()
    (tmp_path / ".prefect" / "profiles.toml").write_text("active = [unclosed\n")
    assert find_user_settings({}, tmp_path).prefect_profile == {}


def test_use_sets_only_what_the_user_left_and_marks_only_its_own_folder(tmp_path,
                                                                         monkeypatch) -> None:
    home, var = tmp_path / "ana", tmp_path / "var"
    (home / ".prefect").mkdir(parents=True)
    (home / ".prefect" / "profiles.toml").write_text("[profiles.ephemeral]\n")
    for key in (*offline_environment(var), "PREFECT_API_URL", "PREFECT_PROFILE",
                "PREFECT_PROFILES_PATH", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("YOLO_OFFLINE", "0")
    applied = use_offline_environment(var)
    assert "PREFECT_HOME" not in applied and "YOLO_OFFLINE" not in applied
    assert applied["YOLO_CONFIG_DIR"] == str(var.resolve() / "ultralytics")
    assert (var / "ultralytics" / "Ultralytics" / OWN_MARK).is_file()
    assert (var / "ultralytics" / "Ultralytics" / "Arial.ttf").is_file()
    assert (var / "matplotlib").is_dir()


def test_a_users_own_ultralytics_folder_gets_no_font_and_no_mark(tmp_path, monkeypatch) -> None:
    theirs, var = tmp_path / "theirs", tmp_path / "var"
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(theirs))
    monkeypatch.setenv("HOME", str(tmp_path / "ana"))
    use_offline_environment(var)
    assert not theirs.exists()


def test_the_harness_pin_makes_its_folders_edgeloops_own(tmp_path) -> None:
    from flows.offline import pin_offline_environment

    pinned = pin_offline_environment(tmp_path / "var")
    assert pinned == offline_environment(tmp_path / "var")
    assert (Path(pinned["YOLO_CONFIG_DIR"]) / "Ultralytics" / OWN_MARK).is_file()
    assert Path(pinned["MPLCONFIGDIR"]).is_dir()
