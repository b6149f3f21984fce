import pytest

from hospiconnect.settings import Settings, SettingsError


def test_defaults_warn_about_every_insecure_setting(tmp_path):
    s = Settings.from_env({"HOSPICONNECT_INSTANCE_PATH": str(tmp_path)})
    warnings = " ".join(s.insecure_defaults())
    for name in ("HOSPICONNECT_DATABASE_URL", "HOSPICONNECT_ISSUER", "HOSPICONNECT_REDIS_URL",
                 "HOSPICONNECT_ENV", "HOSPICONNECT_SECRET_KEY_FILE", "HOSPICONNECT_POLICY_FILE"):
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
        "HOSPICONNECT_POLICY_FILE": str(tmp_path / "politique.yaml"),
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


def test_franceconnect_plus_is_the_local_simulator_outside_production_until_configured(tmp_path):
    s = Settings.from_env({"HOSPICONNECT_INSTANCE_PATH": str(tmp_path), "HOSPICONNECT_ENV": "demo"})
    assert s.fcplus_simulator_enabled and s.fcplus_enabled
    assert "HOSPICONNECT_FCPLUS_DISCOVERY_URL" in " ".join(s.insecure_defaults())
    configured = Settings.from_env({
        "HOSPICONNECT_INSTANCE_PATH": str(tmp_path), "HOSPICONNECT_ENV": "demo",
        "HOSPICONNECT_FCPLUS_DISCOVERY_URL": " https://fcp.example/api/v2/.well-known/openid-configuration ",
        "HOSPICONNECT_FCPLUS_CLIENT_ID": "abc", "HOSPICONNECT_FCPLUS_CLIENT_SECRET": "s3cr3t",
        "HOSPICONNECT_FCPLUS_ACR_VALUES": "eidas3", "HOSPICONNECT_INVITATION_DAYS": "3"})
    assert not configured.fcplus_simulator_enabled and configured.fcplus_enabled
    assert configured.fcplus_discovery_url == "https://fcp.example/api/v2/.well-known/openid-configuration"
    assert (configured.fcplus_acr_values, configured.invitation_days) == ("eidas3", 3)


def test_franceconnect_plus_is_off_in_production_until_fully_configured(tmp_path):
    base = {"HOSPICONNECT_INSTANCE_PATH": str(tmp_path), "HOSPICONNECT_ENV": "production"}
    assert not Settings.from_env(base).fcplus_enabled
    assert not Settings.from_env(base).fcplus_simulator_enabled
    half = Settings.from_env({**base, "HOSPICONNECT_FCPLUS_DISCOVERY_URL": "https://fcp.example/d"})
    assert not half.fcplus_enabled
    full = Settings.from_env({**base, "HOSPICONNECT_FCPLUS_DISCOVERY_URL": "https://fcp.example/d",
                              "HOSPICONNECT_FCPLUS_CLIENT_ID": "abc", "HOSPICONNECT_FCPLUS_CLIENT_SECRET": "x"})
    assert full.fcplus_enabled


def test_exception_and_emergency_settings(tmp_path):
    defaults = Settings.from_env({"HOSPICONNECT_INSTANCE_PATH": str(tmp_path)})
    assert (defaults.exception_max_days, defaults.emergency_hours) == (180, 8)
    chosen = Settings.from_env({"HOSPICONNECT_EXCEPTION_MAX_DAYS": "90", "HOSPICONNECT_EMERGENCY_HOURS": "12"})
    assert (chosen.exception_max_days, chosen.emergency_hours) == (90, 12)
    for name, value in (("HOSPICONNECT_EXCEPTION_MAX_DAYS", "0"), ("HOSPICONNECT_EXCEPTION_MAX_DAYS", "9999"),
                        ("HOSPICONNECT_EXCEPTION_MAX_DAYS", "six mois"), ("HOSPICONNECT_EMERGENCY_HOURS", "0"),
                        ("HOSPICONNECT_EMERGENCY_HOURS", "48")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})


def test_pro_sante_connect_is_the_local_simulator_outside_production_until_configured(tmp_path):
    s = Settings.from_env({"HOSPICONNECT_INSTANCE_PATH": str(tmp_path), "HOSPICONNECT_ENV": "demo"})
    assert s.psc_simulator_enabled and s.psc_enabled and s.psc_acr_values == "eidas1"
    assert "HOSPICONNECT_PSC_DISCOVERY_URL" in " ".join(s.insecure_defaults())
    secret = tmp_path / "psc-secret"
    secret.write_text("  s3cr3t-psc\n", encoding="utf-8")
    configured = Settings.from_env({
        "HOSPICONNECT_INSTANCE_PATH": str(tmp_path), "HOSPICONNECT_ENV": "demo",
        "HOSPICONNECT_PSC_DISCOVERY_URL": " https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet/"
                                          ".well-known/openid-configuration ",
        "HOSPICONNECT_PSC_CLIENT_ID": "hospiconnect", "HOSPICONNECT_PSC_CLIENT_SECRET_FILE": str(secret),
        "HOSPICONNECT_PSC_ACR_VALUES": "eidas2"})
    assert not configured.psc_simulator_enabled and configured.psc_enabled
    assert configured.psc_client_secret() == "s3cr3t-psc" and configured.psc_acr_values == "eidas2"
    assert "s3cr3t" not in repr(configured)
    assert "HOSPICONNECT_PSC_DISCOVERY_URL" not in " ".join(configured.insecure_defaults())


def test_pro_sante_connect_is_off_in_production_until_fully_configured(tmp_path):
    base = {"HOSPICONNECT_INSTANCE_PATH": str(tmp_path), "HOSPICONNECT_ENV": "production"}
    assert not Settings.from_env(base).psc_enabled and not Settings.from_env(base).psc_simulator_enabled
    half = Settings.from_env({**base, "HOSPICONNECT_PSC_DISCOVERY_URL": "https://psc.example/d",
                              "HOSPICONNECT_PSC_CLIENT_ID": "abc"})
    assert not half.psc_enabled
    with pytest.raises(SettingsError, match="HOSPICONNECT_PSC_CLIENT_SECRET_FILE"):
        half.psc_client_secret()
    missing = Settings.from_env({**base, "HOSPICONNECT_PSC_CLIENT_SECRET_FILE": str(tmp_path / "absent")})
    with pytest.raises(SettingsError, match="illisible"):
        missing.psc_client_secret()


def test_pro_sante_connect_acr_is_checked():
    with pytest.raises(SettingsError, match="HOSPICONNECT_PSC_ACR_VALUES"):
        Settings.from_env({"HOSPICONNECT_PSC_ACR_VALUES": "eidas4"})
