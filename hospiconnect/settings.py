"""Typed settings read from ``HOSPICONNECT_*`` environment variables.

Every default that is unsafe in production produces one warning at start-up until it is changed
(:meth:`Settings.insecure_defaults`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path
from typing import Mapping

ENVIRONMENTS = ("production", "development", "demo", "test")

DEFAULT_ISSUER = "http://localhost:5000"

#: The access policy shipped with the product (hospiconnect.policies.loader.DEFAULT_POLICY_PATH; settings may not
#: import policies, a unit test keeps both paths equal). Inside the package: found from a checkout, an editable
#: install and a wheel alike.
DEFAULT_POLICY_FILE = Path(__file__).resolve().parent / "policies" / "rie-2026.yaml"


#: The levels Pro Santé Connect may be asked for (hospiconnect.enrollment.psc checks them again).
PSC_ACR_VALUES = ("eidas1", "eidas2", "eidas3")

#: Who may read ``/metrics`` when HOSPICONNECT_METRICS_ALLOWED_NETWORKS is not set: this host only.
DEFAULT_METRICS_NETWORKS = ("127.0.0.0/8", "::1/128")
#: More reverse proxies in a row than this is a configuration mistake, not an architecture.
MAX_TRUSTED_PROXIES = 5
#: Peers whose X-Forwarded-Proto gunicorn believes unless ``hospiconnect serve --forwarded-allow-ips`` (or
#: HOSPICONNECT_FORWARDED_ALLOW_IPS) says otherwise: a proxy on the same host.
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} doit être un entier (reçu {raw!r})") from exc


def _networks(name: str, items: tuple[str, ...]) -> tuple[str, ...]:
    """Return the CIDR networks ``items`` of the setting ``name`` in canonical form (``10.0.0.1/8`` →
    ``10.0.0.0/8``; a bare address is a network of one). Raises SettingsError for one that is not a network."""
    networks: list[str] = []
    for item in items:
        try:
            networks.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError as exc:
            raise SettingsError(f"{name} : « {item} » n'est pas un réseau valide "
                                f"(notation CIDR, par exemple 10.0.0.0/8 ou ::1/128).") from exc
    return tuple(networks)


def _host_of(url: str | None) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url or DEFAULT_ISSUER).hostname or "localhost"


@dataclasses.dataclass(frozen=True)
class Settings:
    env: str = "development"
    instance_path: Path = Path("instance")
    database_url: str = ""
    issuer: str = DEFAULT_ISSUER
    secret_key_file: Path = Path("instance/keys.json")
    redis_url: str = ""
    establishment_name: str = "Établissement de démonstration"
    # Days between the end of a contract (identity suspended) and the identity being marked departed.
    departure_grace_days: int = 30
    scim_max_page_size: int = 200
    log_level: str = "INFO"
    # MIE layer
    webauthn_rp_id: str = "localhost"
    webauthn_origins: tuple[str, ...] = ("http://localhost:5000",)
    webauthn_aaguid_allowlist: tuple[str, ...] = ()
    lockout_threshold: int = 10
    lockout_minutes: int = 15
    recent_mfa_minutes: int = 10
    # Outbox delivery: "console", "file" or "smtp"
    mail_sender: str = "console"
    mail_from: str = "hospiconnect@localhost"
    smtp_url: str = ""
    # Sessions
    session_idle_minutes: int = 30
    session_absolute_hours: int = 12
    # OpenID provider lifetimes
    code_seconds: int = 60
    access_token_minutes: int = 5
    id_token_minutes: int = 5
    refresh_token_hours: int = 12
    interaction_minutes: int = 15
    # Enrollment: lifetime of an activation code handed to a person
    activation_hours: int = 72
    # Remote enrollment through FranceConnect+. An empty discovery URL disables it in production; elsewhere
    # it designates the FranceConnect+ simulator of this instance (``fcplus_simulator_enabled``).
    fcplus_discovery_url: str = ""
    fcplus_client_id: str = ""
    fcplus_client_secret: str = ""
    fcplus_acr_values: str = "eidas2"
    fcplus_token_auth_method: str = "client_secret_post"
    # National identity through Pro Santé Connect (pairing, sign-in with CPS/e-CPS). An empty discovery URL
    # disables it in production; elsewhere it designates the PSC simulator of this instance
    # (``psc_simulator_enabled``). The client secret is read from a file, never from the environment.
    psc_discovery_url: str = ""
    psc_client_id: str = ""
    psc_client_secret_file: Path | None = None
    psc_acr_values: str = "eidas1"
    # Delegation by PSC (HospiConnect as its local identity provider, client profile "psc"): YAML/JSON file of
    # the MIE type → amr mapping; None: the shipped mapping (hospiconnect.idp.psc_delegation).
    psc_delegation_amr_file: Path | None = None
    # Days an invitation e-mail stays valid (bounded by the case's own expiry).
    invitation_days: int = 7
    # Access policy file (YAML, hospiconnect.policies); a relative path is taken from the working directory.
    policy_file: Path = DEFAULT_POLICY_FILE
    # Seconds between two looks at the policy file by a running process (a changed, valid file is applied
    # without restart; hospiconnect.policies_runtime). 0: before every request.
    policy_check_seconds: float = 5.0
    # Exceptions (dérogations): the latest end date a grant may have, in days from the grant.
    exception_max_days: int = 180
    # Emergency access (bris de glace): validity of an emergency credential, in hours (an officer may shorten it).
    emergency_hours: int = 8
    # Operations. Networks (CIDR) whose clients may read /metrics; every other client gets 403.
    metrics_allowed_networks: tuple[str, ...] = DEFAULT_METRICS_NETWORKS
    # Reverse proxies in front of the process whose X-Forwarded-For/-Proto/-Host are believed, one hop each
    # (werkzeug's ProxyFix). 0: none, the TCP peer is the client — any other value on a process that clients
    # can reach directly would let them choose their own address (and escape per-address throttling).
    trusted_proxies: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Return settings read from ``env`` (default ``os.environ``), then ``overrides``."""
        env = os.environ if env is None else env
        name = env.get("HOSPICONNECT_ENV", "development")
        if name not in ENVIRONMENTS:
            raise SettingsError(
                f"HOSPICONNECT_ENV doit valoir {', '.join(ENVIRONMENTS)} (reçu {name!r})"
            )
        instance = Path(env.get("HOSPICONNECT_INSTANCE_PATH") or "instance").absolute()
        values: dict[str, object] = dict(
            env=name,
            instance_path=instance,
            database_url=env.get("HOSPICONNECT_DATABASE_URL") or f"sqlite:///{instance / 'hospiconnect.db'}",
            issuer=(env.get("HOSPICONNECT_ISSUER") or DEFAULT_ISSUER).rstrip("/"),
            secret_key_file=Path(env.get("HOSPICONNECT_SECRET_KEY_FILE") or instance / "keys.json"),
            redis_url=env.get("HOSPICONNECT_REDIS_URL", ""),
            establishment_name=env.get("HOSPICONNECT_ESTABLISHMENT_NAME") or cls.establishment_name,
            departure_grace_days=_int(env, "HOSPICONNECT_DEPARTURE_GRACE_DAYS", cls.departure_grace_days),
            scim_max_page_size=_int(env, "HOSPICONNECT_SCIM_MAX_PAGE_SIZE", cls.scim_max_page_size),
            log_level=env.get("HOSPICONNECT_LOG_LEVEL", "INFO"),
            webauthn_rp_id=env.get("HOSPICONNECT_WEBAUTHN_RP_ID") or _host_of(env.get("HOSPICONNECT_ISSUER")),
            webauthn_origins=tuple(o.strip().rstrip("/") for o in (env.get("HOSPICONNECT_WEBAUTHN_ORIGINS") or
                                   (env.get("HOSPICONNECT_ISSUER") or DEFAULT_ISSUER)).split(",") if o.strip()),
            webauthn_aaguid_allowlist=tuple(a.strip().lower() for a in
                                            env.get("HOSPICONNECT_WEBAUTHN_AAGUIDS", "").split(",") if a.strip()),
            lockout_threshold=_int(env, "HOSPICONNECT_LOCKOUT_THRESHOLD", cls.lockout_threshold),
            lockout_minutes=_int(env, "HOSPICONNECT_LOCKOUT_MINUTES", cls.lockout_minutes),
            recent_mfa_minutes=_int(env, "HOSPICONNECT_RECENT_MFA_MINUTES", cls.recent_mfa_minutes),
            mail_sender=env.get("HOSPICONNECT_MAIL_SENDER") or cls.mail_sender,
            mail_from=env.get("HOSPICONNECT_MAIL_FROM") or cls.mail_from,
            smtp_url=env.get("HOSPICONNECT_SMTP_URL", ""),
            session_idle_minutes=_int(env, "HOSPICONNECT_SESSION_IDLE_MINUTES", cls.session_idle_minutes),
            session_absolute_hours=_int(env, "HOSPICONNECT_SESSION_ABSOLUTE_HOURS", cls.session_absolute_hours),
            code_seconds=min(60, _int(env, "HOSPICONNECT_CODE_SECONDS", cls.code_seconds)),
            access_token_minutes=_int(env, "HOSPICONNECT_ACCESS_TOKEN_MINUTES", cls.access_token_minutes),
            id_token_minutes=_int(env, "HOSPICONNECT_ID_TOKEN_MINUTES", cls.id_token_minutes),
            refresh_token_hours=_int(env, "HOSPICONNECT_REFRESH_TOKEN_HOURS", cls.refresh_token_hours),
            interaction_minutes=_int(env, "HOSPICONNECT_INTERACTION_MINUTES", cls.interaction_minutes),
            activation_hours=_int(env, "HOSPICONNECT_ACTIVATION_HOURS", cls.activation_hours),
            fcplus_discovery_url=env.get("HOSPICONNECT_FCPLUS_DISCOVERY_URL", "").strip(),
            fcplus_client_id=env.get("HOSPICONNECT_FCPLUS_CLIENT_ID", "").strip(),
            fcplus_client_secret=env.get("HOSPICONNECT_FCPLUS_CLIENT_SECRET", ""),
            fcplus_acr_values=env.get("HOSPICONNECT_FCPLUS_ACR_VALUES") or cls.fcplus_acr_values,
            fcplus_token_auth_method=env.get("HOSPICONNECT_FCPLUS_TOKEN_AUTH_METHOD") or cls.fcplus_token_auth_method,
            psc_discovery_url=env.get("HOSPICONNECT_PSC_DISCOVERY_URL", "").strip(),
            psc_client_id=env.get("HOSPICONNECT_PSC_CLIENT_ID", "").strip(),
            psc_client_secret_file=(Path(env["HOSPICONNECT_PSC_CLIENT_SECRET_FILE"].strip()).expanduser().absolute()
                                    if env.get("HOSPICONNECT_PSC_CLIENT_SECRET_FILE", "").strip() else None),
            psc_acr_values=(env.get("HOSPICONNECT_PSC_ACR_VALUES") or cls.psc_acr_values).strip(),
            psc_delegation_amr_file=(Path(env["HOSPICONNECT_PSC_DELEGATION_AMR_FILE"].strip()).expanduser().absolute()
                                     if env.get("HOSPICONNECT_PSC_DELEGATION_AMR_FILE", "").strip() else None),
            invitation_days=_int(env, "HOSPICONNECT_INVITATION_DAYS", cls.invitation_days),
            policy_file=(Path(env["HOSPICONNECT_POLICY_FILE"]).expanduser().absolute()
                         if env.get("HOSPICONNECT_POLICY_FILE") else DEFAULT_POLICY_FILE),
            policy_check_seconds=_int(env, "HOSPICONNECT_POLICY_CHECK_SECONDS", int(cls.policy_check_seconds)),
            exception_max_days=_int(env, "HOSPICONNECT_EXCEPTION_MAX_DAYS", cls.exception_max_days),
            emergency_hours=_int(env, "HOSPICONNECT_EMERGENCY_HOURS", cls.emergency_hours),
            metrics_allowed_networks=tuple(n.strip() for n in env.get("HOSPICONNECT_METRICS_ALLOWED_NETWORKS", "")
                                           .split(",") if n.strip()) or DEFAULT_METRICS_NETWORKS,
            trusted_proxies=_int(env, "HOSPICONNECT_TRUSTED_PROXIES", cls.trusted_proxies),
        )
        values.update(overrides)
        settings = cls(**values)  # type: ignore[arg-type]
        if not 0 <= settings.policy_check_seconds <= 3600:
            raise SettingsError("HOSPICONNECT_POLICY_CHECK_SECONDS doit être compris entre 0 et 3600.")
        if not 1 <= settings.lockout_threshold <= 100:
            raise SettingsError("HOSPICONNECT_LOCKOUT_THRESHOLD doit être compris entre 1 et 100.")
        if not 1 <= settings.exception_max_days <= 3650:
            raise SettingsError("HOSPICONNECT_EXCEPTION_MAX_DAYS doit être compris entre 1 et 3650.")
        if not 1 <= settings.emergency_hours <= 24:
            raise SettingsError("HOSPICONNECT_EMERGENCY_HOURS doit être compris entre 1 et 24.")
        settings = dataclasses.replace(settings, metrics_allowed_networks=_networks(
            "HOSPICONNECT_METRICS_ALLOWED_NETWORKS", tuple(settings.metrics_allowed_networks)))
        if not 0 <= settings.trusted_proxies <= MAX_TRUSTED_PROXIES:
            raise SettingsError(f"HOSPICONNECT_TRUSTED_PROXIES doit être compris entre 0 et {MAX_TRUSTED_PROXIES}.")
        if settings.psc_acr_values not in PSC_ACR_VALUES:
            raise SettingsError(f"HOSPICONNECT_PSC_ACR_VALUES doit valoir {', '.join(PSC_ACR_VALUES)}.")
        return settings

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def fcplus_simulator_enabled(self) -> bool:
        """True when FranceConnect+ is not configured outside production: this instance's simulator
        (``hospiconnect.devtools.fcplus_simulator``) stands in for it."""
        return not self.is_production and not self.fcplus_discovery_url

    @property
    def fcplus_enabled(self) -> bool:
        """True when remote enrollment through FranceConnect+ can be offered."""
        if self.fcplus_simulator_enabled:
            return True
        return bool(self.fcplus_discovery_url and self.fcplus_client_id and self.fcplus_client_secret)

    @property
    def psc_simulator_enabled(self) -> bool:
        """True when Pro Santé Connect is not configured outside production: this instance's simulator
        (``hospiconnect.devtools.psc_simulator``) stands in for it."""
        return not self.is_production and not self.psc_discovery_url

    @property
    def psc_enabled(self) -> bool:
        """True when pairing and sign-in through Pro Santé Connect can be offered."""
        if self.psc_simulator_enabled:
            return True
        return bool(self.psc_discovery_url and self.psc_client_id and self.psc_client_secret_file)

    def psc_client_secret(self) -> str:
        """Return the PSC client secret read from ``psc_client_secret_file`` (surrounding blanks removed).

        Raises SettingsError when the file is not set, unreadable or empty (the message names the variable
        and the path, never the secret)."""
        if self.psc_client_secret_file is None:
            raise SettingsError("HOSPICONNECT_PSC_CLIENT_SECRET_FILE n'est pas défini.")
        try:
            secret = self.psc_client_secret_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"HOSPICONNECT_PSC_CLIENT_SECRET_FILE : fichier illisible "
                                f"({self.psc_client_secret_file}).") from exc
        if not secret:
            raise SettingsError(f"HOSPICONNECT_PSC_CLIENT_SECRET_FILE : fichier vide ({self.psc_client_secret_file}).")
        return secret

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def insecure_defaults(self) -> list[str]:
        """Return one French message per insecure default still in force."""
        warnings: list[str] = []
        if self.uses_sqlite:
            warnings.append(
                "HOSPICONNECT_DATABASE_URL n'est pas défini : base SQLite locale, à réserver aux essais "
                "(une seule machine, pas de haute disponibilité)."
            )
        if self.issuer == DEFAULT_ISSUER or self.issuer.startswith("http:"):
            warnings.append(
                f"HOSPICONNECT_ISSUER vaut {self.issuer} : en production l'émetteur doit être une URL https publique."
            )
        if not self.redis_url:
            warnings.append(
                "HOSPICONNECT_REDIS_URL n'est pas défini : la limitation des tentatives reste en base de données."
            )
        if self.env != "production":
            warnings.append(
                f"HOSPICONNECT_ENV vaut {self.env!r} : cookies sans l'attribut Secure et outils de démonstration actifs."
            )
        if not os.environ.get("HOSPICONNECT_SECRET_KEY_FILE") and self.secret_key_file.parent == self.instance_path:
            warnings.append(
                "HOSPICONNECT_SECRET_KEY_FILE n'est pas défini : les clés sont dans le dossier d'instance, "
                "à côté de la base ; placez-les sur un volume protégé."
            )
        if self.mail_sender != "smtp":
            warnings.append(
                f"HOSPICONNECT_MAIL_SENDER vaut {self.mail_sender!r} : les notifications ne partent pas par e-mail."
            )
        if self.policy_file == DEFAULT_POLICY_FILE:
            warnings.append(
                "HOSPICONNECT_POLICY_FILE n'est pas défini : politique d'accès livrée, dont les décisions "
                "d'homologation sont des exemples ; copiez-la et inscrivez-y les décisions de l'établissement."
            )
        if self.fcplus_simulator_enabled:
            warnings.append(
                "HOSPICONNECT_FCPLUS_DISCOVERY_URL n'est pas défini : l'enrôlement à distance passe par le "
                "simulateur FranceConnect+ local (identités fictives)."
            )
        if self.psc_simulator_enabled:
            warnings.append(
                "HOSPICONNECT_PSC_DISCOVERY_URL n'est pas défini : Pro Santé Connect est remplacé par le "
                "simulateur PSC local (professionnels fictifs)."
            )
        return warnings
