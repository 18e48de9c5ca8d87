"""Settings: defaults, then the environment, then flags; bad values refused with their name."""

from __future__ import annotations

import pytest

from hub.settings import HubSettings, SettingsError, load_settings


def test_defaults_are_embedded_and_local() -> None:
    settings = load_settings({})
    assert settings.db_url == "sqlite:///var/hub/hub.sqlite"
    assert settings.blobs_url == "var/hub/blobs"
    assert (settings.host, settings.port) == ("127.0.0.1", 8700)
    assert settings.admin_token is None and not settings.access_log


def test_environment_overrides_defaults_and_flags_override_the_environment() -> None:
    env = {"EDGELOOP_HUB_PORT": "9000", "EDGELOOP_HUB_DB": "sqlite:///x.db",
           "EDGELOOP_ADMIN_TOKEN": "from-the-environment", "EDGELOOP_HUB_ACCESS_LOG": "yes",
           "UNRELATED": "1"}
    settings = load_settings(env, port=9100, db_url=None, admin_token="from-a-flag-0123456")
    assert settings.port == 9100  # flag
    assert settings.db_url == "sqlite:///x.db"  # environment: the flag was not given
    assert settings.admin_token == "from-a-flag-0123456"
    assert settings.access_log


@pytest.mark.parametrize("env, flags, message", [
    ({"EDGELOOP_HUB_PORT": "http"}, {}, "EDGELOOP_HUB_PORT"),
    ({}, {"port": 70000}, "port"),
    ({"EDGELOOP_ADMIN_TOKEN": "short"}, {}, "at least 16"),
    ({"EDGELOOP_HUB_ACCESS_LOG": "maybe"}, {}, "boolean"),
    ({}, {"colour": "blue"}, "unknown"),
])
def test_bad_settings_are_refused(env: dict[str, str], flags: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env, **flags)


def test_admin_token_is_required_to_serve_and_never_printed() -> None:
    with pytest.raises(SettingsError, match="EDGELOOP_ADMIN_TOKEN"):
        HubSettings().require_admin_token()
    settings = HubSettings(admin_token="secret-secret-secret")
    assert settings.require_admin_token() == "secret-secret-secret"
    assert "secret" not in repr(settings)
