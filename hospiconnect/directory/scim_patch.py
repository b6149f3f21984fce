"""Writes to a SCIM User: from a whole resource (POST, PUT; RFC 7644 §3.3, §3.5.1) or from PATCH operations
(RFC 7644 §3.5.2) to the raw fields that :func:`services.validate_identity` checks (pure: no Flask, no queries).

Operations are applied, in order, to a :class:`Draft` (a copy of the identity's raw fields); the caller
validates the whole result once and saves it through the directory services.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping

from hospiconnect.directory.models import Identity
from hospiconnect.directory.normalize import first_given_name, normalize_name
from hospiconnect.directory.scim_filter import FilterError, PatchPath, matches, parse_path
from hospiconnect.directory.scim_schema import (
    ATTRIBUTES,
    BY_KEY,
    CORE_USER,
    ENTERPRISE_USER,
    HC_USER,
    PATCH_OP,
    SCHEMA_BY_LOWER,
    USER_SCHEMAS,
    Attribute,
    ScimError,
    attribute,
    display_path,
    resolve,
    schema_urn,
)

MAX_OPERATIONS = 100
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

# Identity field (as validate_identity names it) → attribute named in error messages.
FIELD_ATTRIBUTES = {
    "birth_family_name": f"{HC_USER}:birthFamilyName",
    "usage_name": f"{HC_USER}:usageName",
    "given_names": f"{HC_USER}:givenNames",
    "birth_date": f"{HC_USER}:birthDate",
    "birth_place": f"{HC_USER}:birthPlace",
    "birth_country": f"{HC_USER}:birthCountry",
    "gender": f"{HC_USER}:gender",
    "email": "emails",
    "rpps": f"{HC_USER}:rpps",
    "external_id": "externalId",
    "user_name": "userName",
    "contract_type": f"{HC_USER}:contractType",
    "start_date": f"{HC_USER}:startDate",
    "end_date": f"{HC_USER}:endDate",
    "establishments": f"{HC_USER}:establishments",
    "units": f"{HC_USER}:units",
    "roles": f"{HC_USER}:roles",
}


@dataclasses.dataclass
class Draft:
    """What a write asks for: the raw identity fields, the wanted activity and the homonym confirmation."""

    raw: dict[str, Any]
    active: bool | None = None
    confirm_homonym: bool = False


def draft_from_identity(identity: Identity) -> Draft:
    """Return the identity's current fields in the raw form :func:`services.validate_identity` takes."""
    return Draft(raw={
        "birth_family_name": identity.birth_family_name,
        "usage_name": identity.usage_name,
        "given_names": identity.given_names,
        "birth_date": identity.birth_date.isoformat(),
        "birth_place": identity.birth_place,
        "birth_country": identity.birth_country,
        "gender": identity.gender,
        "email": identity.email,
        "rpps": identity.rpps,
        "external_id": identity.external_id,
        "user_name": identity.user_name,
        "contract_type": identity.contract_type,
        "start_date": identity.start_date.isoformat() if identity.start_date else None,
        "end_date": identity.end_date.isoformat() if identity.end_date else None,
        "establishments": identity.finess_numbers,
        "units": identity.unit_codes,
        "roles": identity.role_names,
    })


def _label(attr: Attribute) -> str:
    return attr.dotted if attr.schema == CORE_USER else f"{attr.schema}:{attr.dotted}"


def _text(attr: Attribute, value: Any) -> str | None:
    """Return ``value`` as a clean string (None clears); raise ScimError for another JSON type."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ScimError(f"{_label(attr)} : une chaîne de caractères est attendue.")
    if _CONTROL_RE.search(value):
        raise ScimError(f"{_label(attr)} : caractère de contrôle interdit.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate from a \ud800 escape
        raise ScimError(f"{_label(attr)} : caractère Unicode invalide.") from exc
    return value.strip() or None


def _boolean(attr: Attribute, value: Any) -> bool:
    # Some provisioning clients send booleans as the strings "True" / "False" in PATCH operations.
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise ScimError(f"{_label(attr)} : une valeur booléenne (true ou false) est attendue.")
    return value


def _items(attr: Attribute, value: Any) -> list[str]:
    """Return the values of a simple multi-valued attribute; ``{"value": …}`` objects are accepted too."""
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in values:
        if isinstance(item, dict):
            item = {str(k).lower(): v for k, v in item.items()}.get("value")
        text = _text(attr, item)
        if text is not None:
            out.append(text)
    return out


# Attributes that map one-to-one to a raw string field.
_STRING_FIELDS = {
    f"{HC_USER}:birthFamilyName".lower(): "birth_family_name",
    f"{HC_USER}:usageName".lower(): "usage_name",
    f"{HC_USER}:givenNames".lower(): "given_names",
    f"{HC_USER}:birthDate".lower(): "birth_date",
    f"{HC_USER}:birthPlace".lower(): "birth_place",
    f"{HC_USER}:birthCountry".lower(): "birth_country",
    f"{HC_USER}:gender".lower(): "gender",
    f"{HC_USER}:rpps".lower(): "rpps",
    f"{HC_USER}:contractType".lower(): "contract_type",
    f"{HC_USER}:startDate".lower(): "start_date",
    f"{HC_USER}:endDate".lower(): "end_date",
}
_LIST_FIELDS = {
    f"{HC_USER}:establishments".lower(): "establishments",
    f"{HC_USER}:units".lower(): "units",
    f"{HC_USER}:roles".lower(): "roles",
}
_EXTERNAL_ID_KEYS = {f"{CORE_USER}:externalId".lower(), f"{ENTERPRISE_USER}:employeeNumber".lower()}


class _Editor:
    """Applies writes, attribute by attribute, to a :class:`Draft`."""

    def __init__(self, draft: Draft) -> None:
        self.draft = draft
        self.raw = draft.raw

    # Single attributes ---------------------------------------------------------------------------------
    def set(self, attr: Attribute, value: Any, *, strict: bool = True) -> None:
        """Replace the value of the writable attribute ``attr`` (None clears it)."""
        key = attr.key
        if key in _STRING_FIELDS:
            self.raw[_STRING_FIELDS[key]] = _text(attr, value)
        elif key in _LIST_FIELDS:
            self.raw[_LIST_FIELDS[key]] = _items(attr, value)
        elif key in _EXTERNAL_ID_KEYS:
            text = _text(attr, value)
            if text is None and self.raw.get("external_id"):
                raise ScimError(f"{_label(attr)} ne peut pas être effacé : l'identifiant externe relie "
                                "l'identité au système source.", scim_type="mutability")
            self.raw["external_id"] = text
        elif key == f"{CORE_USER}:userName".lower():
            text = _text(attr, value)
            if text is None:
                raise ScimError("userName ne peut pas être effacé.")
            self.raw["user_name"] = text.lower()
        elif key == f"{CORE_USER}:name".lower():
            if value is None:
                raise ScimError("name ne peut pas être effacé (le nom est obligatoire).")
            self.set_object(CORE_USER, "name", value, strict=strict)
        elif key == f"{CORE_USER}:name.familyName".lower():
            self.set_family_name(attr, value)
        elif key == f"{CORE_USER}:name.givenName".lower():
            self.set_given_name(attr, value)
        elif key == f"{CORE_USER}:emails".lower():
            self.set_emails(attr, value)
        elif key == f"{CORE_USER}:emails.value".lower():
            self.raw["email"] = _text(attr, value)
        elif key in (f"{CORE_USER}:emails.type".lower(), f"{CORE_USER}:emails.primary".lower()):
            self.check_email_flag(attr, value)
        elif key == f"{CORE_USER}:active".lower():
            self.draft.active = None if value is None else _boolean(attr, value)
        elif key == f"{HC_USER}:homonymConfirmed".lower():
            self.draft.confirm_homonym = False if value is None else _boolean(attr, value)
        else:  # pragma: no cover - every writable attribute of the catalogue is handled above
            raise ScimError(f"{_label(attr)} ne peut pas être modifié.", scim_type="mutability")

    def set_object(self, schema: str, parent: str | None, value: Any, *, strict: bool = True) -> None:
        """Set every member of a JSON object (the ``name`` object, an extension object or a whole resource)."""
        if not isinstance(value, dict):
            raise ScimError(f"{parent or schema} : un objet JSON est attendu.")
        for member, member_value in value.items():
            if not isinstance(member, str) or (parent is None and member.lower() == "schemas"):
                continue
            dotted = f"{parent}.{member}" if parent else member
            found = BY_KEY.get(f"{schema}:{dotted}".lower())
            if found is None:
                if strict:
                    raise ScimError(f"Attribut inconnu : « {schema}:{dotted} ».", scim_type="invalidPath")
                continue
            self.write(found, member_value, strict=strict)

    def write(self, attr: Attribute, value: Any, *, strict: bool) -> None:
        """Replace ``attr``; a read-only attribute is an error when ``strict`` (PATCH), ignored otherwise
        (PUT and POST, RFC 7644 §3.5.1)."""
        if not attr.writable:
            if strict:
                raise ScimError(f"« {_label(attr)} » est en lecture seule.", scim_type="mutability")
            return
        self.set(attr, value, strict=strict)

    def set_family_name(self, attr: Attribute, value: Any) -> None:
        text = _text(attr, value)
        if text is None:
            raise ScimError("name.familyName ne peut pas être effacé (le nom est obligatoire).")
        current_usage = self.raw.get("usage_name")
        current = current_usage or self.raw.get("birth_family_name")
        if current and normalize_name(current) == normalize_name(text):
            return
        # familyName is the name in use: it changes the usage name when there is one, else the birth name.
        if current_usage:
            self.raw["usage_name"] = text
        else:
            self.raw["birth_family_name"] = text

    def set_given_name(self, attr: Attribute, value: Any) -> None:
        text = _text(attr, value)
        if text is None:
            raise ScimError("name.givenName ne peut pas être effacé (le prénom est obligatoire).")
        current = self.raw.get("given_names") or ""
        if current and normalize_name(first_given_name(current)) == normalize_name(text):
            return
        # givenName is the first given name: replace it and keep the others.
        rest = re.sub(r"^\s*[^\s,]+[\s,]*", "", current)
        self.raw["given_names"] = f"{text} {rest}".strip()

    def set_emails(self, attr: Attribute, value: Any) -> None:
        if value is None or value == []:
            self.raw["email"] = None
            return
        entries = value if isinstance(value, list) else [value]
        if not all(isinstance(e, dict) for e in entries):
            raise ScimError("emails : une liste d'objets {\"value\": …} est attendue.")
        lowered = [{str(k).lower(): v for k, v in e.items()} for e in entries]
        # One address is kept: the primary one, else the work one, else the first.
        chosen = (next((e for e in lowered if e.get("primary") is True), None)
                  or next((e for e in lowered if str(e.get("type", "")).lower() == "work"), None)
                  or lowered[0])
        email_value = attribute(CORE_USER, "emails.value")
        if "value" not in chosen:
            raise ScimError("emails : chaque adresse doit avoir un membre « value ».")
        self.raw["email"] = _text(email_value, chosen["value"])

    def check_email_flag(self, attr: Attribute, value: Any) -> None:
        expected: Any = "work" if attr.name == "type" else True
        given = _text(attr, value) if attr.name == "type" else _boolean(attr, value)
        if isinstance(given, str):
            given = given.lower()
        if given != expected:
            shown = "work" if attr.name == "type" else "true"
            raise ScimError(f"{_label(attr)} : seule la valeur « {shown} » est gérée (une seule adresse, "
                            "professionnelle et principale).")

    # PATCH ----------------------------------------------------------------------------------------------
    def patch(self, op: str, target: PatchPath | None, value: Any, has_value: bool) -> None:
        if op in ("add", "replace") and not has_value:
            raise ScimError(f"L'opération « {op} » demande un membre « value ».")
        if target is None:
            if op == "remove":
                raise ScimError("L'opération « remove » demande un chemin (path).", scim_type="noTarget")
            self.patch_object(op, CORE_USER, value)
            return
        whole = schema_urn(target.path)
        if whole is not None and target.filter is None:
            if op == "remove":
                for attr in ATTRIBUTES:
                    if attr.schema == whole and attr.parent is None and attr.writable:
                        self.set(attr, None)
                return
            self.patch_object(op, whole, value)
            return
        attr = resolve(target.path)
        if attr is None:
            raise ScimError(f"Attribut inconnu : « {display_path(target)} ».", scim_type="invalidPath")
        if target.filter is not None:
            self.patch_filtered(op, attr, target, value)
            return
        self.patch_attribute(op, attr, value)

    def patch_object(self, op: str, schema: str, value: Any) -> None:
        """``add`` / ``replace`` without a path: the value is an object of attributes (RFC 7644 §3.5.2.1)."""
        if not isinstance(value, dict):
            raise ScimError(f"L'opération « {op} » sans chemin demande un objet JSON comme valeur.")
        for member, member_value in value.items():
            if not isinstance(member, str) or member.lower() == "schemas":
                continue
            extension = SCHEMA_BY_LOWER.get(member.lower())
            if extension is not None and schema == CORE_USER:
                self.patch_object(op, extension, member_value)
                continue
            # Members may be paths themselves ("name.givenName", "urn:…:User:rpps").
            try:
                path = parse_path(member if schema == CORE_USER or ":" in member else f"{schema}:{member}")
            except FilterError as exc:
                raise ScimError(f"Attribut invalide « {member} » : {exc.message}", scim_type="invalidPath") from exc
            attr = resolve(path.path) if path.filter is None and path.sub_attr is None else None
            if attr is None:
                raise ScimError(f"Attribut inconnu : « {member} ».", scim_type="invalidPath")
            self.patch_attribute(op, attr, member_value)

    def patch_attribute(self, op: str, attr: Attribute, value: Any) -> None:
        if not attr.writable:
            raise ScimError(f"« {_label(attr)} » est en lecture seule.", scim_type="mutability")
        if op == "remove":
            if attr.key in _LIST_FIELDS and value is not None:
                # Some clients name the values to remove in "value" instead of a filter.
                unwanted = {v.lower() for v in _items(attr, value)}
                field = _LIST_FIELDS[attr.key]
                self.raw[field] = [v for v in self.raw.get(field) or [] if v.lower() not in unwanted]
                return
            self.set(attr, None)
            return
        if op == "add" and attr.key in _LIST_FIELDS:
            field = _LIST_FIELDS[attr.key]
            current = list(self.raw.get(field) or [])
            current_lower = {v.lower() for v in current}
            current += [v for v in _items(attr, value) if v.lower() not in current_lower]
            self.raw[field] = current
            return
        if attr.type == "complex" and not attr.multi_valued and op == "add":
            # add on a complex attribute merges its sub-attributes.
            self.set_object(attr.schema, attr.name, value)
            return
        self.set(attr, value)

    def patch_filtered(self, op: str, attr: Attribute, target: PatchPath, value: Any) -> None:
        assert target.filter is not None
        if attr.key == f"{CORE_USER}:emails".lower():
            self.patch_email(op, target, value)
            return
        if attr.key not in _LIST_FIELDS:
            raise ScimError(f"Un filtre entre crochets ne s'applique qu'à un attribut multivalué "
                            f"(« {display_path(target)} »).", scim_type="invalidPath")
        if target.sub_attr is not None and target.sub_attr.lower() != "value":
            raise ScimError(f"Sous-attribut inconnu : « {display_path(target)} ».", scim_type="invalidPath")
        field = _LIST_FIELDS[attr.key]
        current = list(self.raw.get(field) or [])
        selected = [v for v in current if matches(target.filter, {"value": v})]
        if not selected:
            raise ScimError(f"Aucune valeur ne correspond à « {display_path(target)} ».", scim_type="noTarget")
        kept = [v for v in current if v not in selected]
        if op == "remove":
            self.raw[field] = kept
        else:
            self.raw[field] = kept + _items(attr, value)

    def patch_email(self, op: str, target: PatchPath, value: Any) -> None:
        assert target.filter is not None
        sub = (target.sub_attr or "").lower()
        if sub not in ("", "value", "type", "primary"):
            raise ScimError(f"Sous-attribut inconnu : « {display_path(target)} ».", scim_type="invalidPath")
        email = self.raw.get("email")
        current = {"value": email, "type": "work", "primary": True} if email else None
        if op == "remove":
            if current is None or not matches(target.filter, current):
                raise ScimError(f"Aucune adresse ne correspond à « {display_path(target)} ».",
                                scim_type="noTarget")
            if sub in ("type", "primary"):
                raise ScimError(f"{display_path(target)} ne peut pas être effacé.", scim_type="mutability")
            self.raw["email"] = None
            return
        if sub in ("type", "primary"):
            self.check_email_flag(attribute(CORE_USER, f"emails.{sub}"), value)
            return
        email_value = attribute(CORE_USER, "emails.value")
        if sub == "value":
            new = _text(email_value, value)
        else:
            if not isinstance(value, dict):
                raise ScimError(f"{display_path(target)} : un objet {{\"value\": …}} est attendu.")
            new = _text(email_value, {str(k).lower(): v for k, v in value.items()}.get("value"))
        candidate = {"value": new, "type": "work", "primary": True}
        # With no address yet, a filter that a new work address satisfies creates it (what provisioning
        # clients expect from emails[type eq "work"].value); otherwise the filter must match the address.
        if current is not None and not matches(target.filter, current):
            raise ScimError(f"Aucune adresse ne correspond à « {display_path(target)} ».", scim_type="noTarget")
        if current is None and not matches(target.filter, candidate):
            raise ScimError(f"Aucune adresse ne correspond à « {display_path(target)} ».", scim_type="noTarget")
        self.raw["email"] = new


def check_schemas(body: Mapping[str, Any], required: str, allowed: Iterable[str]) -> None:
    """Raise ScimError(invalidSyntax) unless ``body["schemas"]`` lists ``required`` and only ``allowed``."""
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        raise ScimError(f"Le membre « schemas » doit être une liste contenant {required}.",
                        scim_type="invalidSyntax")
    known = {s.lower() for s in allowed}
    lowered = [s.lower() for s in schemas]
    if required.lower() not in lowered:
        raise ScimError(f"Le membre « schemas » doit contenir {required}.", scim_type="invalidSyntax")
    unknown = [s for s in schemas if s.lower() not in known]
    if unknown:
        raise ScimError(f"Schéma non pris en charge : {unknown[0]}.", scim_type="invalidSyntax")


def apply_resource(draft: Draft, body: Mapping[str, Any]) -> Draft:
    """Write a whole User resource (POST, PUT) into ``draft`` and return it.

    Attributes present replace the current values (``null`` or ``[]`` clears them); attributes left out
    are kept, as RFC 7644 §3.5.1 allows ("MAY be assumed to be not asserted"): a client that does not know
    the HospiConnect extension can PUT without erasing the civil-status fields. Read-only and unknown
    attributes are ignored. The core ``name`` is applied before the extensions, so the extension's
    ``birthFamilyName`` / ``givenNames`` win over ``name.familyName`` / ``name.givenName``.
    """
    check_schemas(body, CORE_USER, USER_SCHEMAS)
    _check_external_ids(body)
    editor = _Editor(draft)
    core = {k: v for k, v in body.items() if isinstance(k, str) and k.lower() not in SCHEMA_BY_LOWER}
    editor.set_object(CORE_USER, None, core, strict=False)
    for member, value in body.items():
        schema = SCHEMA_BY_LOWER.get(member.lower()) if isinstance(member, str) else None
        if schema is not None and schema != CORE_USER:
            editor.set_object(schema, None, value, strict=False)
    return draft


def _check_external_ids(body: Mapping[str, Any]) -> None:
    enterprise = next((v for k, v in body.items() if isinstance(k, str) and k.lower() == ENTERPRISE_USER.lower()),
                      None)
    if not isinstance(enterprise, dict) or not isinstance(body.get("externalId"), str):
        return
    number = next((v for k, v in enterprise.items() if isinstance(k, str) and k.lower() == "employeenumber"), None)
    if isinstance(number, str) and number.strip() != body["externalId"].strip():
        raise ScimError("externalId et employeeNumber désignent le même identifiant et diffèrent.")


def apply_patch(draft: Draft, body: Mapping[str, Any]) -> Draft:
    """Apply a PatchOp message (RFC 7644 §3.5.2) to ``draft`` and return it.

    Operations apply in order to the draft; the caller validates the result once. Raises ScimError:
    invalidSyntax (not a PatchOp), invalidPath (unknown or malformed path), noTarget (a filter matches no
    value), mutability (read-only attribute), invalidValue (wrong value type).
    """
    check_schemas(body, PATCH_OP, (PATCH_OP,))
    operations = next((v for k, v in body.items() if isinstance(k, str) and k.lower() == "operations"), None)
    if not isinstance(operations, list) or not operations:
        raise ScimError("Le membre « Operations » doit être une liste non vide.", scim_type="invalidSyntax")
    if len(operations) > MAX_OPERATIONS:
        raise ScimError(f"Au plus {MAX_OPERATIONS} opérations par requête.", scim_type="invalidSyntax")
    editor = _Editor(draft)
    for operation in operations:
        if not isinstance(operation, dict):
            raise ScimError("Chaque opération doit être un objet JSON.", scim_type="invalidSyntax")
        members = {str(k).lower(): v for k, v in operation.items()}
        op = members.get("op")
        if not isinstance(op, str) or op.lower() not in ("add", "replace", "remove"):
            shown = f"« {op[:50]} »" if isinstance(op, str) else "absente"
            raise ScimError(f"Opération {shown} inconnue (attendu : add, replace, remove).",
                            scim_type="invalidSyntax")
        raw_path = members.get("path")
        target: PatchPath | None = None
        if raw_path is not None:
            if not isinstance(raw_path, str):
                raise ScimError("Le chemin (path) doit être une chaîne.", scim_type="invalidPath")
            try:
                target = parse_path(raw_path)
            except FilterError as exc:
                raise ScimError(f"Chemin invalide « {raw_path[:200]} » : {exc.message}",
                                scim_type="invalidPath") from exc
        editor.patch(op.lower(), target, members.get("value"), "value" in members)
    return draft


def validation_detail(errors: Mapping[str, str]) -> str:
    """Return one French sentence naming every refused attribute and why."""
    parts = [f"{FIELD_ATTRIBUTES.get(field, field)} : {message}" for field, message in errors.items()]
    return " ; ".join(parts) or "Données invalides."
