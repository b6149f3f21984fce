import pytest

from hospiconnect.settings import Settings, SettingsError


def test_defaults_warn_about_every_insecure_setting(tmp_path):
    s = Settings.from_env({"HOSPICONNECT_INSTANCE_PATH": str(tmp_path)})
    warnings = " ".join(s.insecure_defaults())
    for name in ("HOSPICONNECT_DATABASE_URL", "HOSPICONNECT_ISSUER", "HOSPICONNECT_REDIS_URL",
                 "HOSPICONNECT_ENV", "HOSPICONNECT_SECRET_KEY_FILE"):
        assert name in warnings
    assert s.database_url == f"sqlite:///{tmp_path / 'hospiconnect.db'}"


def test_production_settings_do_not_warn(tmp_path, monkeypatch):
    monkeypatch.setenv("HOSPICONNECT_SECRET_KEY_FILE", str(tmp_path / "k.json"))
    env = {
        "HOSPICONNECT_ENV": "production",
        "HOSPICONNECT_DATABASE_URL": "postgresql://db/hc",
        "HOSPICONNECT_ISSUER": "https://idp.chu-exemple.fr/",
        "HOSPICONNECT_REDIS_URL": "redis://cache:6379/0",
        "HOSPICONNECT_SECRET_KEY_FILE": str(tmp_path / "k.json"),
        "HOSPICONNECT_MAIL_SENDER": "smtp",
        "HOSPICONNECT_SMTP_URL": "smtp://relais.chu-exemple.fr:25",
    }
    s = Settings.from_env(env)
    assert s.insecure_defaults() == []
    assert s.issuer == "https://idp.chu-exemple.fr"
    assert s.webauthn_rp_id == "idp.chu-exemple.fr"
    assert s.webauthn_origins == ("https://idp.chu-exemple.fr",)


def test_lockout_threshold_bounded():
    with pytest.raises(SettingsError):
        Settings.from_env({"HOSPICONNECT_LOCKOUT_THRESHOLD": "500"})


def test_bad_environment_name_is_refused():
    with pytest.raises(SettingsError):
        Settings.from_env({"HOSPICONNECT_ENV": "prod"})


def test_bad_integer_is_refused():
    with pytest.raises(SettingsError, match="HOSPICONNECT_DEPARTURE_GRACE_DAYS"):
        Settings.from_env({"HOSPICONNECT_DEPARTURE_GRACE_DAYS": "trente"})
