"""The SCIM User resource of the directory (RFC 7643 §4.1, §4.3 and the HospiConnect extension): the attribute
catalogue, the representation of an identity, ``attributes`` / ``excludedAttributes`` (RFC 7644 §3.4.2.5) and
the discovery documents (RFC 7643 §5–§7). Writes are in :mod:`scim_patch`, queries in :mod:`scim_query`.

No Flask and no queries here: the blueprint loads and saves, this module only translates.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from typing import Any, Iterable

from hospiconnect.directory.models import Identity
from hospiconnect.directory.normalize import first_given_name
from hospiconnect.directory.scim_filter import AttrPath, PatchPath, render_attr_path, render_path
from hospiconnect.errors import HospiConnectError

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
HC_USER = "urn:hospiconnect:scim:schemas:extension:2.0:User"
USER_SCHEMAS = (CORE_USER, ENTERPRISE_USER, HC_USER)
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"


class ScimError(HospiConnectError):
    """An error the SCIM API reports as is: HTTP status, ``scimType`` (RFC 7644 §3.12) and French detail."""

    def __init__(self, message: str, *, status: int = 400, scim_type: str | None = "invalidValue") -> None:
        super().__init__(message, code=scim_type or "scim_error")
        self.http_status = status
        self.scim_type = scim_type


# --- attribute catalogue ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Attribute:
    """One attribute of a schema, with the characteristics the Schemas endpoint publishes (RFC 7643 §7)."""

    schema: str
    name: str
    type: str = "string"
    parent: str | None = None
    multi_valued: bool = False
    mutability: str = "readWrite"
    returned: str = "default"
    required: bool = False
    case_exact: bool = False
    uniqueness: str = "none"
    description: str = ""
    canonical_values: tuple[str, ...] = ()

    @property
    def dotted(self) -> str:
        return f"{self.parent}.{self.name}" if self.parent else self.name

    @property
    def key(self) -> str:
        """``schema:dotted`` in lower case: the identity of the attribute for look-ups."""
        return f"{self.schema}:{self.dotted}".lower()

    @property
    def writable(self) -> bool:
        return self.mutability in ("readWrite", "writeOnly", "immutable")


def _a(schema: str, name: str, description: str, **kw: Any) -> Attribute:
    return Attribute(schema=schema, name=name, description=description, **kw)


ATTRIBUTES: tuple[Attribute, ...] = (
    _a(CORE_USER, "id", "Identifiant stable attribué par HospiConnect.", mutability="readOnly",
       returned="always", case_exact=True, uniqueness="server"),
    _a(CORE_USER, "externalId", "Identifiant de la personne dans le système source (RH).", case_exact=True,
       uniqueness="server"),
    _a(CORE_USER, "userName", "Identifiant de connexion (minuscules, chiffres, « . », « - », « _ »).",
       uniqueness="server"),
    _a(CORE_USER, "name", "Nom de la personne.", type="complex"),
    _a(CORE_USER, "familyName", "Nom utilisé : le nom d'usage s'il existe, sinon le nom de naissance. "
       "L'écrire change le nom d'usage quand il y en a un, le nom de naissance sinon.", parent="name"),
    _a(CORE_USER, "givenName", "Premier prénom. L'écrire remplace le premier prénom.", parent="name"),
    _a(CORE_USER, "formatted", "Prénoms et nom, calculés.", parent="name", mutability="readOnly"),
    _a(CORE_USER, "displayName", "Prénom et nom utilisés, calculés.", mutability="readOnly"),
    _a(CORE_USER, "emails", "Adresse e-mail professionnelle (une seule est gérée).", type="complex",
       multi_valued=True),
    _a(CORE_USER, "value", "Adresse e-mail.", parent="emails"),
    _a(CORE_USER, "type", "Toujours « work ».", parent="emails", canonical_values=("work",)),
    _a(CORE_USER, "primary", "Toujours vrai.", type="boolean", parent="emails"),
    _a(CORE_USER, "active", "Vrai quand l'identité est active. false suspend l'identité, true la réactive.",
       type="boolean"),
    _a(CORE_USER, "meta", "Métadonnées de la ressource.", type="complex", mutability="readOnly"),
    _a(CORE_USER, "resourceType", "Toujours « User ».", parent="meta", mutability="readOnly", case_exact=True),
    _a(CORE_USER, "created", "Date de création.", type="dateTime", parent="meta", mutability="readOnly"),
    _a(CORE_USER, "lastModified", "Date de dernière modification.", type="dateTime", parent="meta",
       mutability="readOnly"),
    _a(CORE_USER, "location", "URL de la ressource.", type="reference", parent="meta", mutability="readOnly",
       case_exact=True),
    _a(CORE_USER, "version", "Version (ETag faible).", parent="meta", mutability="readOnly", case_exact=True),
    _a(ENTERPRISE_USER, "employeeNumber", "Identifiant dans le système source (identique à externalId).",
       case_exact=True),
    _a(ENTERPRISE_USER, "organization", "Premier numéro FINESS de rattachement (calculé ; écrire dans "
       f"{HC_USER}:establishments).", mutability="readOnly"),
    _a(ENTERPRISE_USER, "department", "Premier code d'unité (calculé ; écrire dans "
       f"{HC_USER}:units).", mutability="readOnly"),
    _a(HC_USER, "birthFamilyName", "Nom de naissance (état civil).", required=True),
    _a(HC_USER, "usageName", "Nom d'usage, s'il diffère du nom de naissance."),
    _a(HC_USER, "givenNames", "Tous les prénoms de l'état civil, dans l'ordre, séparés par des espaces.",
       required=True),
    _a(HC_USER, "birthDate", "Date de naissance, AAAA-MM-JJ.", required=True),
    _a(HC_USER, "birthPlace", "Code INSEE de la commune de naissance (naissance en France).", case_exact=True),
    _a(HC_USER, "birthCountry", "Code INSEE du pays de naissance (99100 pour la France).", required=True,
       case_exact=True),
    _a(HC_USER, "gender", "Genre.", required=True, canonical_values=("female", "male", "unspecified")),
    _a(HC_USER, "rpps", "Numéro RPPS (11 chiffres, clé de Luhn).", case_exact=True, uniqueness="server"),
    _a(HC_USER, "population", "« rpps » pour les professionnels inscrits au RPPS, « local » sinon.",
       mutability="readOnly", canonical_values=("rpps", "local")),
    _a(HC_USER, "contractType", "Type de contrat.", required=True,
       canonical_values=("permanent", "fixed_term", "replacement", "interim", "vacataire", "trainee",
                         "contractor")),
    _a(HC_USER, "startDate", "Date d'arrivée, AAAA-MM-JJ."),
    _a(HC_USER, "endDate", "Date de fin de contrat, AAAA-MM-JJ."),
    _a(HC_USER, "status", "Statut dans l'annuaire.", mutability="readOnly",
       canonical_values=("pending", "active", "suspended", "departed")),
    _a(HC_USER, "establishments", "Numéros FINESS de rattachement.", multi_valued=True),
    _a(HC_USER, "units", "Codes des unités (pôles, services).", multi_valued=True, case_exact=True),
    _a(HC_USER, "roles", "Rôles (minuscules).", multi_valued=True),
    _a(HC_USER, "homonymConfirmed", "À mettre à true pour confirmer qu'il s'agit d'un homonyme d'une identité "
       "existante (même nom de naissance, premier prénom et date de naissance).", type="boolean",
       mutability="writeOnly", returned="never"),
)

BY_KEY = {a.key: a for a in ATTRIBUTES}
SCHEMA_BY_LOWER = {s.lower(): s for s in USER_SCHEMAS}


def attribute(schema: str, dotted: str) -> Attribute:
    """Return the catalogue entry of ``schema:dotted`` (the key is case-insensitive); raise KeyError."""
    return BY_KEY[f"{schema}:{dotted}".lower()]


def schema_urn(path: AttrPath) -> str | None:
    """Return the schema URN when ``path`` names a whole schema (``urn:…:2.0:User``), else None."""
    if path.uri is None or path.sub_attr is not None:
        return None
    return SCHEMA_BY_LOWER.get(f"{path.uri}:{path.attr}".lower())


def resolve(path: AttrPath) -> Attribute | None:
    """Return the attribute ``path`` names, or None when unknown.

    Without a URI, the core schema is tried first, then the extensions: clients may leave out the URI of
    an extension attribute when the name is not ambiguous (there is no clash in these schemas).
    """
    dotted = path.key()
    if path.uri is not None:
        schema = SCHEMA_BY_LOWER.get(path.uri.lower())
        return BY_KEY.get(f"{schema}:{dotted}".lower()) if schema else None
    for schema in USER_SCHEMAS:
        found = BY_KEY.get(f"{schema}:{dotted}".lower())
        if found is not None:
            return found
    return None


def display_path(path: AttrPath | PatchPath) -> str:
    """Return ``path`` as the client wrote it (canonical spacing), for messages."""
    return render_path(path) if isinstance(path, PatchPath) else render_attr_path(path)


# --- representation --------------------------------------------------------------------------------------

def format_datetime(value: dt.datetime) -> str:
    """Return an RFC 3339 UTC timestamp with milliseconds (``2026-11-27T09:30:00.123Z``)."""
    return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def etag(identity: Identity) -> str:
    return f'W/"{identity.version}"'


def family_name(identity: Identity) -> str:
    return identity.usage_name or identity.birth_family_name


def to_resource(identity: Identity, location: str) -> dict[str, Any]:
    """Return the SCIM User representation of ``identity``; unassigned attributes are left out."""
    family = family_name(identity)
    resource: dict[str, Any] = {
        "schemas": list(USER_SCHEMAS),
        "id": identity.public_id,
        "externalId": identity.external_id,
        "userName": identity.user_name,
        "name": {
            "familyName": family,
            "givenName": first_given_name(identity.given_names),
            "formatted": f"{identity.given_names} {family}".strip(),
        },
        "displayName": identity.display_name,
        "emails": [{"value": identity.email, "type": "work", "primary": True}] if identity.email else None,
        "active": identity.is_active,
        ENTERPRISE_USER: {
            "employeeNumber": identity.external_id,
            "organization": (identity.finess_numbers or [None])[0],
            "department": (identity.unit_codes or [None])[0],
        },
        HC_USER: {
            "birthFamilyName": identity.birth_family_name,
            "usageName": identity.usage_name,
            "givenNames": identity.given_names,
            "birthDate": identity.birth_date.isoformat(),
            "birthPlace": identity.birth_place,
            "birthCountry": identity.birth_country,
            "gender": identity.gender,
            "rpps": identity.rpps,
            "population": identity.population,
            "contractType": identity.contract_type,
            "startDate": identity.start_date.isoformat() if identity.start_date else None,
            "endDate": identity.end_date.isoformat() if identity.end_date else None,
            "status": identity.status,
            "establishments": identity.finess_numbers,
            "units": identity.unit_codes,
            "roles": identity.role_names,
        },
        "meta": {
            "resourceType": "User",
            "created": format_datetime(identity.created_at),
            "lastModified": format_datetime(identity.updated_at),
            "location": location,
            "version": etag(identity),
        },
    }
    return _drop_empty(resource)


def _drop_empty(value: Any) -> Any:
    if isinstance(value, dict):
        cleaned = {k: _drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, [], {})}
    return value


def project(resource: dict[str, Any], attributes: Iterable[AttrPath], excluded: Iterable[AttrPath]) -> dict[str, Any]:
    """Apply ``attributes`` / ``excludedAttributes`` (RFC 7644 §3.4.2.5) to a representation.

    ``id`` and ``schemas`` are always returned; unknown names are ignored.
    """
    attributes, excluded = list(attributes), list(excluded)
    if not attributes and not excluded:
        return resource

    def locate(path: AttrPath) -> tuple[tuple[str, ...], Attribute] | None:
        attr = resolve(path)
        if attr is None:
            return None
        container = () if attr.schema == CORE_USER else (attr.schema,)
        return container + tuple(attr.dotted.split(".")), attr

    wanted = [found for found in map(locate, attributes) if found]
    unwanted = [found for found in map(locate, excluded) if found]
    if wanted:
        out: dict[str, Any] = {"schemas": resource["schemas"], "id": resource["id"]}
        for keys, _attr in wanted:
            source: Any = resource
            for key in keys[:-1]:
                source = source.get(key, {}) if isinstance(source, dict) else {}
            if not isinstance(source, dict) or keys[-1] not in source:
                continue
            branch = out
            for key in keys[:-1]:
                branch = branch.setdefault(key, {})
            branch[keys[-1]] = copy.deepcopy(source[keys[-1]])
        resource = out
    else:
        resource = copy.deepcopy(resource)
    for keys, attr in unwanted:
        if attr.returned == "always":
            continue
        target: Any = resource
        for key in keys[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target.pop(keys[-1], None)
    return _drop_empty(resource)


# --- documents for the discovery endpoints (RFC 7643 §5, §6, §7) ---------------------------------------------

def _attribute_document(attr: Attribute) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": attr.name,
        "type": attr.type,
        "multiValued": attr.multi_valued,
        "description": attr.description,
        "required": attr.required,
        "mutability": attr.mutability,
        "returned": attr.returned,
    }
    if attr.type in ("string", "reference"):
        doc["caseExact"] = attr.case_exact
        doc["uniqueness"] = attr.uniqueness
    if attr.canonical_values:
        doc["canonicalValues"] = list(attr.canonical_values)
    if attr.type == "reference":
        doc["referenceTypes"] = ["uri"]
    children = [a for a in ATTRIBUTES if a.schema == attr.schema and a.parent == attr.name]
    if children:
        doc["subAttributes"] = [_attribute_document(c) for c in children]
    return doc


_SCHEMA_NAMES = {
    CORE_USER: ("User", "Identité de l'annuaire (schéma SCIM de base)."),
    ENTERPRISE_USER: ("EnterpriseUser", "Extension entreprise (RFC 7643 §4.3)."),
    HC_USER: ("HospiConnectUser", "Extension HospiConnect : état civil, RPPS, contrat, rattachements."),
}


def schema_document(urn: str, base_url: str) -> dict[str, Any]:
    """Return the schema document of ``urn`` (one of :data:`USER_SCHEMAS`); raise KeyError when unknown."""
    name, description = _SCHEMA_NAMES[urn]
    top = [a for a in ATTRIBUTES if a.schema == urn and a.parent is None]
    return {
        "schemas": [SCHEMA_SCHEMA],
        "id": urn,
        "name": name,
        "description": description,
        "attributes": [_attribute_document(a) for a in top],
        "meta": {"resourceType": "Schema", "location": f"{base_url}/Schemas/{urn}"},
    }


def resource_type_document(base_url: str) -> dict[str, Any]:
    return {
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "Identités de l'annuaire",
        "schema": CORE_USER,
        "schemaExtensions": [{"schema": ENTERPRISE_USER, "required": False},
                             {"schema": HC_USER, "required": False}],
        "meta": {"resourceType": "ResourceType", "location": f"{base_url}/ResourceTypes/User"},
    }


def service_provider_config(base_url: str, max_results: int) -> dict[str, Any]:
    return {
        "schemas": [SPC_SCHEMA],
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": max_results},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Jeton d'accès HospiConnect",
            "description": "Jeton porteur créé par « hospiconnect token create --scope scim » "
                           "(ou scim:read pour la lecture seule), envoyé dans l'en-tête Authorization.",
            "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
            "primary": True,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base_url}/ServiceProviderConfig"},
    }


def list_response(resources: list[dict[str, Any]], *, total: int, start_index: int) -> dict[str, Any]:
    return {"schemas": [LIST_RESPONSE], "totalResults": total, "itemsPerPage": len(resources),
            "startIndex": start_index, "Resources": resources}

