"""Validation of the directory's identifiers and codes (pure functions, French messages)."""

from __future__ import annotations

import datetime as dt
import re

from hospiconnect.errors import ValidationError

RPPS_RE = re.compile(r"^\d{11}$")
FINESS_RE = re.compile(r"^(\d{2}|2A|2B)\d{7}$")
COMMUNE_RE = re.compile(r"^(\d{2}|2A|2B)\d{3}$")
COUNTRY_RE = re.compile(r"^99\d{3}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FRANCE = "99100"

GENDERS = ("female", "male", "unspecified")
CONTRACT_TYPES = {
    "permanent": "CDI ou titulaire",
    "fixed_term": "CDD",
    "replacement": "Remplacement",
    "interim": "Intérim",
    "vacataire": "Vacataire",
    "trainee": "Étudiant ou stagiaire",
    "contractor": "Prestataire externe",
}
STATUSES = {
    "pending": "En attente",
    "active": "Actif",
    "suspended": "Suspendu",
    "departed": "Parti",
}


def luhn_valid(digits: str) -> bool:
    """Return True when ``digits`` ends with a correct Luhn check digit."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        n = int(char)
        if index % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def luhn_complete(prefix: str) -> str:
    """Return ``prefix`` followed by its Luhn check digit."""
    for key in "0123456789":
        if luhn_valid(prefix + key):
            return prefix + key
    raise AssertionError("unreachable")


def check_rpps(value: str) -> str:
    """Return the RPPS number (11 digits, the last one a Luhn key) or raise ValidationError."""
    value = value.strip()
    if not RPPS_RE.match(value):
        raise ValidationError("Le numéro RPPS doit comporter 11 chiffres.", field="rpps", code="rpps_format")
    if not luhn_valid(value):
        raise ValidationError("La clé de contrôle du numéro RPPS est fausse.", field="rpps", code="rpps_key")
    return value


def check_finess(value: str) -> str:
    value = value.strip().upper()
    if not FINESS_RE.match(value):
        raise ValidationError(
            f"Numéro FINESS invalide : {value!r} (9 caractères attendus).", field="finess", code="finess_format"
        )
    return value


def check_birth_place(commune: str | None, country: str) -> tuple[str | None, str]:
    """Return (commune, country) as INSEE codes. A commune is required when born in France."""
    country = (country or "").strip()
    commune = (commune or "").strip().upper() or None
    if not COUNTRY_RE.match(country):
        raise ValidationError("Le pays de naissance doit être un code pays INSEE (99xxx, 99100 pour la France).",
                              field="birth_country", code="country_format")
    if country == FRANCE:
        if commune is None or not COMMUNE_RE.match(commune):
            raise ValidationError("La commune de naissance doit être un code commune INSEE à 5 caractères.",
                                  field="birth_place", code="commune_format")
    elif commune is not None:
        raise ValidationError("La commune de naissance ne se renseigne que pour une naissance en France.",
                              field="birth_place", code="commune_abroad")
    return commune, country


def check_email(value: str) -> str:
    value = value.strip()
    if len(value) > 254 or not EMAIL_RE.match(value):
        raise ValidationError(f"Adresse e-mail invalide : {value!r}.", field="email", code="email_format")
    return value.lower()


def check_gender(value: str) -> str:
    mapping = {"f": "female", "female": "female", "femme": "female", "m": "male", "male": "male",
               "homme": "male", "u": "unspecified", "unspecified": "unspecified", "x": "unspecified"}
    key = (value or "").strip().lower()
    if key not in mapping:
        raise ValidationError("Le genre doit valoir F, M ou X.", field="gender", code="gender")
    return mapping[key]


def check_contract_type(value: str) -> str:
    if value not in CONTRACT_TYPES:
        raise ValidationError(
            f"Type de contrat inconnu : {value!r} (attendu : {', '.join(CONTRACT_TYPES)}).",
            field="contract_type", code="contract_type",
        )
    return value


def check_name(value: str, field: str, label: str, *, required: bool = True) -> str:
    value = " ".join((value or "").split())
    if required and not value:
        raise ValidationError(f"{label} est obligatoire.", field=field, code="required")
    if len(value) > 100:
        raise ValidationError(f"{label} dépasse 100 caractères.", field=field, code="too_long")
    if value and not re.search(r"[^\W\d_]", value):
        raise ValidationError(f"{label} doit contenir des lettres.", field=field, code="name_format")
    return value


def parse_date(value: str, field: str, label: str) -> dt.date:
    """Parse ``YYYY-MM-DD`` or ``DD/MM/YYYY``."""
    text = (value or "").strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValidationError(f"{label} : date invalide {text!r} (attendu AAAA-MM-JJ ou JJ/MM/AAAA).",
                          field=field, code="date_format")


def check_birth_date(value: dt.date, today: dt.date) -> dt.date:
    if value > today:
        raise ValidationError("La date de naissance est dans le futur.", field="birth_date", code="birth_future")
    if value.year < 1900:
        raise ValidationError("La date de naissance est antérieure à 1900.", field="birth_date", code="birth_past")
    return value
