"""SCIM queries on the directory (RFC 7644 §3.4.2): a filter AST becomes one SQL condition on ``identities``,
then a count query and one page query (the identity's links are selectin-loaded: no query per row).

Every condition is two-valued (never SQL NULL), so ``not (…)`` keeps its SCIM meaning on columns that may
be empty: ``not (rpps pr)`` finds the identities without an RPPS number. Names are compared through their
``*_norm`` columns with :func:`normalize_name`, so ``name.familyName eq "lefevre"`` finds « Lefèvre »;
``userName`` and e-mail addresses, stored in lower case, compare case-insensitively through their indexes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import string
from typing import Any, Callable

from sqlalchemy import ColumnElement, and_, false, func, not_, or_, select, true
from sqlalchemy.orm import Session

from hospiconnect.directory.models import Identity, IdentityEstablishment, IdentityRole, IdentityUnit
from hospiconnect.directory.normalize import first_given_name, normalize_name
from hospiconnect.directory.scim_filter import (
    And,
    AttrPath,
    Comparison,
    Filter,
    FilterError,
    Not,
    Or,
    Present,
    ValuePath,
    matches,
    parse_filter,
    parse_path,
    render_attr_path,
)
from hospiconnect.directory.scim_schema import CORE_USER, ENTERPRISE_USER, HC_USER, ScimError, resolve
from hospiconnect.directory.validation import STATUSES

Condition = ColumnElement[bool]


def _invalid(message: str) -> ScimError:
    return ScimError(message, scim_type="invalidFilter")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _clean_text(value: Any, path: AttrPath) -> str:
    """Return ``value`` when it is a string the database can store; raise invalidFilter otherwise."""
    if not isinstance(value, str):
        raise _invalid(f"« {render_attr_path(path)} » se compare à une chaîne entre guillemets.")
    if "\x00" in value:
        raise _invalid("Caractère nul interdit dans une valeur de filtre.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _invalid("Caractère Unicode invalide dans une valeur de filtre.") from exc
    return value


# Last characters after which "prefix <= value < prefix with its last character incremented" holds under
# the usual collations too (C, C.UTF-8, glibc and ICU French or English): an ASCII letter or digit whose
# successor is one as well. After punctuation or an accented letter, linguistic collations compare at a
# level where the range would wrongly leave matches out.
_RANGE_SAFE_LAST = frozenset(string.ascii_letters + string.digits) - {"z", "Z", "9"}


def _prefix_range(column: Any, prefix: str) -> Condition | None:
    """Return ``prefix <= column < next(prefix)``, a range a btree index serves, or None when unsafe.

    PostgreSQL turns ``LIKE 'abc%'`` into an index range only under the "C" collation (not "C.UTF-8", not
    fr_FR): without this range every ``sw`` would scan the table. The LIKE stays next to it and keeps the
    exact meaning; the range is only a necessary condition that lets the planner use the index.
    """
    if not prefix or prefix[-1] not in _RANGE_SAFE_LAST:
        return None
    return and_(column >= prefix, column < prefix[:-1] + chr(ord(prefix[-1]) + 1))


def _string_condition(column: Any, op: str, key: str) -> Condition:
    if op == "eq":
        return column == key
    if op == "co":
        return column.like(f"%{_escape_like(key)}%", escape="\\")
    if op == "sw":
        found = column.like(f"{_escape_like(key)}%", escape="\\")
        bounds = _prefix_range(column, key)
        return found if bounds is None else and_(bounds, found)
    if op == "ew":
        return column.like(f"%{_escape_like(key)}", escape="\\")
    return {"gt": column > key, "ge": column >= key, "lt": column < key, "le": column <= key}[op]


def _ordered_condition(column: Any, op: str, value: Any) -> Condition:
    return {"eq": column == value, "gt": column > value, "ge": column >= value, "lt": column < value,
            "le": column <= value}[op]


class _Field:
    """How one SCIM attribute is searched. ``condition`` handles eq (ne is its negation) and the rest."""

    def present(self) -> Condition:
        raise NotImplementedError

    def condition(self, path: AttrPath, op: str, value: Any) -> Condition:
        raise NotImplementedError

    def compile(self, path: AttrPath, op: str, value: Any) -> Condition:
        if op == "ne":
            return not_(self.condition(path, "eq", value))
        return self.condition(path, op, value)


@dataclasses.dataclass
class _Text(_Field):
    """A string column; ``transform`` brings the value to the stored form (lower case, normalised name…)."""

    column: Any
    transform: Callable[[str], str] = lambda s: s
    nullable: bool = False

    def present(self) -> Condition:
        return and_(self.column.is_not(None), self.column != "") if self.nullable else true()

    def condition(self, path: AttrPath, op: str, value: Any) -> Condition:
        if value is None:
            return self.column.is_(None) if self.nullable else false()
        key = self.transform(_clean_text(value, path))
        found = _string_condition(self.column, op, key)
        # Guarding with IS NOT NULL keeps the condition two-valued for NOT.
        return and_(self.column.is_not(None), found) if self.nullable else found


class _FamilyName(_Field):
    """name.familyName is the usage name when there is one, else the birth name."""

    def present(self) -> Condition:
        return true()

    def condition(self, path: AttrPath, op: str, value: Any) -> Condition:
        if value is None:
            return false()
        key = normalize_name(_clean_text(value, path))
        usage, birth = Identity.usage_name_norm, Identity.birth_family_name_norm
        # Written as an OR over the two indexed columns rather than COALESCE(), so that PostgreSQL can
        # combine both indexes for eq and sw.
        return or_(and_(usage.is_not(None), _string_condition(usage, op, key)),
                   and_(usage.is_(None), _string_condition(birth, op, key)))


class _GivenNames(_Field):
    """All the given names, compared case-insensitively on the whole string."""

    def present(self) -> Condition:
        return true()

    def condition(self, path: AttrPath, op: str, value: Any) -> Condition:
        if value is None:
            return false()
        text = " ".join(_clean_text(value, path).split()).lower()
        found = _string_condition(func.lower(Identity.given_names), op, text)
        if op == "eq":
            # Narrow through the indexed first given name; the full comparison keeps the meaning.
            found = and_(Identity.first_given_name_norm == normalize_name(first_given_name(text)), found)
        return found


class _Active(_Field):
    def present(self) -> Condition:
        return true()

    def condition(self, path: AttrPath, op: str, value: Any) -> Condition:
        if op != "eq" or not isinstance(value, bool):
            raise _invalid("« active » se compare avec eq ou ne à true ou false.")
        if value:
            return Identity.status == "active"
        # An IN list over the known statuses uses the status index, where != "active" cannot.
        return Identity.status.in_([status for status in STATUSES if status != "active"])


@dataclasses.dataclass
class _When(_Field):
    """A date (``AAAA-MM-JJ``) or a date-time (RFC 3339) column."""

    column: Any
    with_time: bool = False
    nullable: bool = False

    def present(self) -> Condition:
        return self.column.is_not(None) if self.nullable else true()

    def parse(self, path: AttrPath, value: Any) -> dt.date | dt.datetime:
        text = _clean_text(value, path).strip()
        try:
            if self.with_time:
                moment = dt.datetime.fromisoformat(text)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=dt.timezone.utc)
                return moment.astimezone(dt.timezone.utc)
            return dt.date.fromisoformat(text[:10] if len(text) > 10 and text[10] == "T" else text)
        except (ValueError, OverflowError) as exc:
            expected = "une date-heure RFC 3339 (2026-11-27T09:30:00Z)" if self.with_time else "une date AAAA-MM-JJ"
            raise _invalid(f"« {render_attr_path(path)} » se compare à {expected}.") from exc

    def condition(self, path: AttrPath, op: str, value: Any) -> Condition:
        if value is None:
            return self.column.is_(None) if self.nullable else false()
        if op in ("co", "sw", "ew"):
            raise _invalid(f"L'opérateur « {op} » ne s'applique pas à une date (« {render_attr_path(path)} »).")
        found = _ordered_condition(self.column, op, self.parse(path, value))
        return and_(self.column.is_not(None), found) if self.nullable else found


@dataclasses.dataclass
class _Links(_Field):
    """A simple multi-valued attribute stored in a link table: true when any value matches."""

    relation: Any
    column: Any
    transform: Callable[[str], str] = lambda s: s

    def present(self) -> Condition:
        return self.relation.any()

    def value_condition(self, path: AttrPath, op: str, value: Any) -> Condition:
        return _string_condition(self.column, op, self.transform(_clean_text(value, path)))

    def condition(self, path: AttrPath, op: str, value: Any) -> Condition:
        if value is None:
            return not_(self.relation.any())
        return self.relation.any(self.value_condition(path, op, value))


@dataclasses.dataclass
class _Constant(_Field):
    """A sub-attribute whose value is the same for every resource that has the attribute (emails.type is
    always "work"): evaluated here, then guarded by ``guard`` (the attribute is present)."""

    name: str
    value: Any
    guard: Condition | None = None

    def present(self) -> Condition:
        return self.guard if self.guard is not None else true()

    def condition(self, path: AttrPath, op: str, value: Any) -> Condition:
        hit = matches(Comparison(AttrPath(self.name), op, value), {self.name.lower(): self.value})
        if not hit:
            return false()
        return self.guard if self.guard is not None else true()


def _email() -> _Text:
    return _Text(Identity.email, str.lower, nullable=True)


def _key(schema: str, dotted: str) -> str:
    return f"{schema}:{dotted}".lower()


_FIELDS: dict[str, _Field] = {
    _key(CORE_USER, "id"): _Text(Identity.public_id),
    _key(CORE_USER, "externalId"): _Text(Identity.external_id, nullable=True),
    _key(CORE_USER, "userName"): _Text(Identity.user_name, str.lower),
    _key(CORE_USER, "name.familyName"): _FamilyName(),
    _key(CORE_USER, "name.givenName"): _Text(Identity.first_given_name_norm, normalize_name),
    _key(CORE_USER, "emails"): _email(),
    _key(CORE_USER, "emails.value"): _email(),
    _key(CORE_USER, "emails.type"): _Constant("type", "work", Identity.email.is_not(None)),
    _key(CORE_USER, "emails.primary"): _Constant("primary", True, Identity.email.is_not(None)),
    _key(CORE_USER, "active"): _Active(),
    _key(CORE_USER, "meta.created"): _When(Identity.created_at, with_time=True),
    _key(CORE_USER, "meta.lastModified"): _When(Identity.updated_at, with_time=True),
    _key(CORE_USER, "meta.resourceType"): _Constant("resourceType", "User"),
    _key(ENTERPRISE_USER, "employeeNumber"): _Text(Identity.external_id, nullable=True),
    _key(HC_USER, "birthFamilyName"): _Text(Identity.birth_family_name_norm, normalize_name),
    _key(HC_USER, "usageName"): _Text(Identity.usage_name_norm, normalize_name, nullable=True),
    _key(HC_USER, "givenNames"): _GivenNames(),
    _key(HC_USER, "birthDate"): _When(Identity.birth_date),
    _key(HC_USER, "birthPlace"): _Text(Identity.birth_place, str.upper, nullable=True),
    _key(HC_USER, "birthCountry"): _Text(Identity.birth_country),
    _key(HC_USER, "gender"): _Text(Identity.gender, str.lower),
    _key(HC_USER, "rpps"): _Text(Identity.rpps, nullable=True),
    _key(HC_USER, "population"): _Text(Identity.population, str.lower),
    _key(HC_USER, "contractType"): _Text(Identity.contract_type, str.lower),
    _key(HC_USER, "status"): _Text(Identity.status, str.lower),
    _key(HC_USER, "startDate"): _When(Identity.start_date, nullable=True),
    _key(HC_USER, "endDate"): _When(Identity.end_date, nullable=True),
    _key(HC_USER, "establishments"): _Links(Identity.establishments, IdentityEstablishment.finess, str.upper),
    _key(HC_USER, "units"): _Links(Identity.units, IdentityUnit.unit_code),
    _key(HC_USER, "roles"): _Links(Identity.roles, IdentityRole.role, str.lower),
}


def _field(path: AttrPath) -> _Field:
    """Return how to search ``path``; raise invalidFilter naming it when it is unknown or not searchable."""
    attr = resolve(path)
    if attr is None and path.sub_attr is not None and path.sub_attr.lower() == "value":
        # roles.value is the same as roles for a simple multi-valued attribute.
        base = resolve(AttrPath(path.attr, None, path.uri))
        if base is not None and isinstance(_FIELDS.get(base.key), _Links):
            attr = base
    name = render_attr_path(path)
    if attr is None:
        raise _invalid(f"Attribut inconnu dans le filtre : « {name} ».")
    field = _FIELDS.get(attr.key)
    if field is None:
        raise _invalid(f"L'attribut « {name} » ne peut pas servir de filtre.")
    return field


def _flatten(node: And | Or) -> list[Filter]:
    """Return the operands of a chain of the same operator, left to right, without recursion."""
    kind = type(node)
    out: list[Filter] = []
    stack: list[Filter] = [node]
    while stack:
        item = stack.pop()
        if type(item) is kind:
            stack.append(item.right)  # type: ignore[union-attr]
            stack.append(item.left)  # type: ignore[union-attr]
        else:
            out.append(item)
    return out


def _compile(node: Filter, scope: dict[str, _Field] | None = None) -> Condition:
    if isinstance(node, (And, Or)):
        parts = [_compile(part, scope) for part in _flatten(node)]
        return and_(*parts) if isinstance(node, And) else or_(*parts)
    if isinstance(node, Not):
        return not_(_compile(node.operand, scope))
    if isinstance(node, ValuePath):
        return _compile_value_path(node)
    field = _scoped_field(node.path, scope) if scope is not None else _field(node.path)
    if isinstance(node, Present):
        return field.present()
    return field.compile(node.path, node.op, node.value)


def _scoped_field(path: AttrPath, scope: dict[str, _Field]) -> _Field:
    field = scope.get(path.key())
    if field is None:
        raise _invalid(f"Sous-attribut inconnu dans le filtre : « {render_attr_path(path)} » "
                       f"(attendu : {', '.join(sorted(scope))}).")
    return field


def _compile_value_path(node: ValuePath) -> Condition:
    attr = resolve(node.path)
    name = render_attr_path(node.path)
    if attr is None:
        raise _invalid(f"Attribut inconnu dans le filtre : « {name} ».")
    if attr.key == _key(CORE_USER, "emails"):
        present = Identity.email.is_not(None)
        scope: dict[str, _Field] = {"value": _email(), "type": _Constant("type", "work", present),
                                    "primary": _Constant("primary", True, present)}
        return and_(present, _compile(node.filter, scope))
    field = _FIELDS.get(attr.key)
    if isinstance(field, _Links):
        # The inner filter is about one value: it runs inside a single EXISTS on the link table.
        inner = _compile(node.filter, {"value": _LinkValue(field)})
        return field.relation.any(inner)
    raise _invalid(f"Un filtre entre crochets ne s'applique qu'à un attribut multivalué (« {name} »).")


@dataclasses.dataclass
class _LinkValue(_Field):
    """``value`` inside ``roles[…]``: a condition on the link row, to be wrapped in the caller's EXISTS."""

    links: _Links

    def present(self) -> Condition:
        return true()

    def condition(self, path: AttrPath, op: str, value: Any) -> Condition:
        if value is None:
            return false()
        return self.links.value_condition(path, op, value)


def filter_condition(text: str) -> Condition:
    """Return the SQL condition of the SCIM filter ``text``; raise ScimError(invalidFilter)."""
    try:
        node = parse_filter(text)
    except FilterError as exc:
        raise _invalid(f"Filtre invalide : {exc.message}.") from exc
    return _compile(node)


# --- sorting and paging (RFC 7644 §3.4.2.3, §3.4.2.4) ----------------------------------------------------------

_SORTS: dict[str, Any] = {
    _key(CORE_USER, "userName"): Identity.user_name,
    _key(CORE_USER, "name.familyName"): func.coalesce(Identity.usage_name_norm, Identity.birth_family_name_norm),
    _key(CORE_USER, "name.givenName"): Identity.first_given_name_norm,
    _key(CORE_USER, "meta.created"): Identity.created_at,
    _key(CORE_USER, "meta.lastModified"): Identity.updated_at,
    _key(CORE_USER, "externalId"): Identity.external_id,
    _key(ENTERPRISE_USER, "employeeNumber"): Identity.external_id,
    _key(HC_USER, "birthDate"): Identity.birth_date,
    _key(HC_USER, "birthFamilyName"): Identity.birth_family_name_norm,
}
SORTABLE = ("userName", "name.familyName", "name.givenName", "meta.created", "meta.lastModified", "externalId",
            f"{HC_USER}:birthDate")


def order_by(sort_by: str | None, sort_order: str | None) -> list[Any]:
    """Return the ORDER BY clauses; raise ScimError(invalidValue) for an unknown attribute or order.

    Without ``sortBy`` the order is the creation order (the primary key), which keeps pages stable.
    Missing values come last in ascending order and first in descending order (RFC 7644 §3.4.2.3).
    """
    order = (sort_order or "ascending").strip().lower()
    if order not in ("ascending", "descending"):
        raise ScimError("sortOrder vaut « ascending » ou « descending ».")
    descending = order == "descending"
    if not sort_by:
        return [Identity.id.desc() if descending else Identity.id.asc()]
    try:
        target = parse_path(sort_by)
    except FilterError as exc:
        raise ScimError(f"sortBy invalide : {exc.message}.") from exc
    attr = resolve(target.path) if target.filter is None and target.sub_attr is None else None
    column = _SORTS.get(attr.key) if attr is not None else None
    if column is None:
        raise ScimError(f"Tri impossible sur « {sort_by[:100]} » (attributs triables : {', '.join(SORTABLE)}).")
    if descending:
        return [column.desc().nulls_first(), Identity.id.desc()]
    return [column.asc().nulls_last(), Identity.id.asc()]


def search(session: Session, *, filter_text: str | None, start_index: int, count: int,
           sort_by: str | None = None, sort_order: str | None = None) -> tuple[int, list[Identity]]:
    """Return ``(totalResults, identities of the page)``; ``start_index`` is 1-based.

    Raises ScimError: invalidFilter for a bad filter, invalidValue for a bad sort.
    """
    condition = filter_condition(filter_text) if filter_text else true()
    ordering = order_by(sort_by, sort_order)
    total = session.scalar(select(func.count()).select_from(Identity).where(condition)) or 0
    if count <= 0 or start_index > total:
        return total, []
    rows = session.scalars(
        select(Identity).where(condition).order_by(*ordering).limit(count).offset(start_index - 1)
    ).all()
    return total, list(rows)


def find_user(session: Session, public_id: str, *, for_update: bool = False) -> Identity | None:
    """Return the identity whose public id is ``public_id`` (locked for update when asked), or None."""
    stmt = select(Identity).where(Identity.public_id == public_id)
    if for_update:
        # Holds the row until commit so that an If-Match check and the write happen as one step.
        stmt = stmt.with_for_update()
    return session.scalar(stmt)

