"""Import of the HR system's CSV export into the directory (``hospiconnect directory import``).

The work is split in three phases so that a bad file never touches the database and a large file never
costs one query per row:

1. **parse** (pure): bytes → one :class:`SourceRow` per data line, validated with
   :func:`services.validate_identity`, each with its line number in the file. Problems that make the whole
   file unusable (unreadable, not UTF-8, empty, missing columns) raise :class:`UnusableFile`.
2. **plan** (pure, against a :class:`DirectoryIndex` loaded once with a handful of queries): decide for each
   row whether the identity is created, updated, ended, unchanged or rejected (duplicate matricule, RPPS
   held by someone else, possible homonym), and choose the user names.
3. **apply**: bulk Core statements (``executemany`` in chunks) and one :func:`audit.record_many` for the
   journal, all inside the caller's transaction, so a failure leaves nothing half-written.

The matching key is the HR employee number (``matricule``), stored in ``Identity.external_id``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import functools
import gc
import hashlib
import io
import re
import unicodedata
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.db import utcnow
from hospiconnect.directory import services
from hospiconnect.directory.models import (
    Establishment,
    Identity,
    IdentityEstablishment,
    IdentityRole,
    IdentityUnit,
    OrgUnit,
)
from hospiconnect.directory.normalize import first_given_name, normalize_name
from hospiconnect.errors import Conflict, HospiConnectError, ValidationError

# --- the file format -----------------------------------------------------------------------------------

#: Column of the file → key understood by :func:`services.validate_identity` (None: handled here).
COLUMNS: dict[str, str | None] = {
    "matricule": "external_id",
    "nom_naissance": "birth_family_name",
    "nom_usage": "usage_name",
    "prenoms": "given_names",
    "date_naissance": "birth_date",
    "commune_naissance": "birth_place",
    "pays_naissance": "birth_country",
    "sexe": "gender",
    "email": "email",
    "rpps": "rpps",
    "finess": "establishments",
    "unites": "units",
    "roles": "roles",
    "contrat": "contract_type",
    "date_debut": "start_date",
    "date_fin": "end_date",
    "homonyme_confirme": None,
}
REQUIRED_COLUMNS = ("matricule", "nom_naissance", "prenoms", "date_naissance", "commune_naissance",
                    "pays_naissance", "sexe", "contrat")
#: Where a validation error on a field is reported: the column the HR people can find in their file.
FIELD_COLUMNS = {field: column for column, field in COLUMNS.items() if field}

#: Contract labels accepted in the ``contrat`` column (compared without case, accents or separators).
CONTRACT_LABELS: dict[str, str] = {
    "permanent": "permanent", "cdi": "permanent", "titulaire": "permanent",
    "fixedterm": "fixed_term", "cdd": "fixed_term",
    "replacement": "replacement", "remplacement": "replacement",
    "interim": "interim",
    "vacataire": "vacataire",
    "trainee": "trainee", "etudiant": "trainee", "stagiaire": "trainee",
    "contractor": "contractor", "prestataire": "contractor",
}
_TRUE = {"oui", "o", "yes", "y", "true", "vrai", "1", "x"}
_FALSE = {"", "non", "n", "no", "false", "faux", "0"}

#: Fields compared to decide whether an existing identity changed (lists compared as sorted tuples).
COMPARED_FIELDS = ("birth_family_name", "usage_name", "given_names", "birth_date", "birth_place",
                   "birth_country", "gender", "email", "rpps", "contract_type", "start_date", "end_date",
                   "establishments", "units", "roles")
_LIST_FIELDS = ("establishments", "units", "roles")
_SCALAR_FIELDS = tuple(f for f in COMPARED_FIELDS if f not in _LIST_FIELDS)
_DEDUP_FIELDS = {"birth_family_name", "given_names", "birth_date"}

_LINK_TABLES = (("establishments", IdentityEstablishment.__table__, "finess"),
                ("units", IdentityUnit.__table__, "unit_code"),
                ("roles", IdentityRole.__table__, "role"))

END_REASON = "fin de contrat (import RH)"
CHUNK = 2000


class UnusableFile(HospiConnectError):
    """The file as a whole cannot be imported (unreadable, not UTF-8, empty, missing columns…)."""

    code = "unusable_file"


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a big file is processed.

    Parsing and planning allocate hundreds of thousands of small objects without reference cycles; the
    collector would otherwise rescan the growing heap again and again (a third of the time on 100,000 rows).
    Reference counting still frees everything as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@functools.lru_cache(maxsize=512)  # a column holds few distinct labels: fold each once
def _fold(text: str) -> str:
    """Return ``text`` without accents, case or separators, for label and header comparisons."""
    text = unicodedata.normalize("NFKD", text.strip())
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return re.sub(r"[\s\-]+", "_", text)


def contract_type_from_label(label: str) -> str | None:
    """Return the contract code for an HR label (``CDI``, ``Intérim``, ``fixed_term``…), or None if unknown."""
    return CONTRACT_LABELS.get(_fold(label).replace("_", ""))


def _accepted_contract_labels() -> str:
    return "CDI, titulaire, CDD, remplacement, intérim, vacataire, étudiant, stagiaire, prestataire"


# --- phase 1: parse (pure) -----------------------------------------------------------------------------

@dataclasses.dataclass
class SourceRow:
    """One data line of the file: its validated content, or the reasons it cannot be used."""

    line: int
    matricule: str
    data: services.IdentityData | None
    errors: list[str]
    confirm_homonym: bool = False


@dataclasses.dataclass
class ParsedFile:
    """The parsed file: its rows and what was noticed about it."""

    name: str
    sha256: str
    delimiter: str
    columns: list[str]
    rows: list[SourceRow]
    warnings: list[str] = dataclasses.field(default_factory=list)

    def has(self, column: str) -> bool:
        return column in self.columns


def read_hr_file(path: str | Path, *, today: dt.date) -> ParsedFile:
    """Read and parse the HR file at ``path``; return the :class:`ParsedFile`.

    Raises :class:`UnusableFile` when the file cannot be read or used as a whole.
    """
    path = Path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise UnusableFile(f"fichier introuvable : {path}.") from None
    except IsADirectoryError:
        raise UnusableFile(f"{path} est un dossier, pas un fichier.") from None
    except OSError as exc:
        raise UnusableFile(f"impossible de lire le fichier {path} ({exc.strerror or exc}).") from None
    with _gc_paused():
        return parse_hr_csv(content, name=path.name, today=today)


def _decode(content: bytes) -> str:
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnusableFile("le fichier est encodé en UTF-16 : réexportez-le au format « CSV UTF-8 ».")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[:exc.start].count(b"\n") + 1
        raise UnusableFile(
            f"le fichier n'est pas encodé en UTF-8 (premier caractère illisible ligne {line}, probablement "
            "un export Windows-1252/Latin-1) : réexportez-le au format « CSV UTF-8 »."
        ) from None


def _detect_delimiter(first_line: str) -> str:
    # Separators inside quoted names must not count, hence the quoted parts are removed first.
    unquoted = re.sub(r'"[^"]*"', "", first_line)
    semicolons, commas = unquoted.count(";"), unquoted.count(",")
    if commas > semicolons:
        return ","
    return ";"


def _read_header(reader: Iterator[list[str]], reader_obj: Any) -> tuple[list[str], int]:
    for record in reader:
        if any(cell.strip() for cell in record):
            return record, reader_obj.line_num
    raise UnusableFile("le fichier est vide.")


_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_FR_DATE = re.compile(r"^(\d{2})/(\d{2})/(\d{4})$")


def _quick_date(value: str) -> dt.date | str:
    """Return the date written in ``value`` (AAAA-MM-JJ or JJ/MM/AAAA), or ``value`` itself when it is not one.

    ``strptime`` costs more than the rest of a row's validation together; the formats accepted are exactly
    those of ``validation.parse_date``, which still reports anything left as text with its French message.
    """
    match = _ISO_DATE.match(value)
    if match:
        year, month, day = match.groups()
    else:
        match = _FR_DATE.match(value)
        if not match:
            return value
        day, month, year = match.groups()
    try:
        return dt.date(int(year), int(month), int(day))
    except ValueError:
        return value


def _parse_bool(value: str) -> bool | None:
    key = _fold(value)
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    return None


def parse_hr_csv(content: bytes, *, name: str, today: dt.date) -> ParsedFile:
    """Parse the bytes of an HR export; return the :class:`ParsedFile` (nothing is read from the database).

    Raises :class:`UnusableFile` for an encoding problem, an empty file, a missing or duplicated required
    column, or a CSV structure that cannot be read. Problems of single rows are reported on the rows.
    """
    text = _decode(content)
    if not text.strip():
        raise UnusableFile("le fichier est vide.")
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = _detect_delimiter(first_line)
    source = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header, header_line = _read_header(iter(source), source)
        while header and not header[-1].strip():
            header = header[:-1]  # trailing separators on the header line
        positions: dict[str, int] = {}
        unknown: list[str] = []
        for index, cell in enumerate(header):
            column = _fold(cell)
            if not column:
                continue  # an unnamed column: nothing to import from it
            if column in positions:
                raise UnusableFile(f"la colonne « {cell.strip()} » figure deux fois dans l'en-tête.")
            if column in COLUMNS:
                positions[column] = index
            else:
                unknown.append(cell.strip())
        missing = [c for c in REQUIRED_COLUMNS if c not in positions]
        if missing:
            hint = ""
            if len(header) == 1:
                hint = " Le séparateur doit être « ; » ou « , »."
            raise UnusableFile(
                f"colonne(s) obligatoire(s) absente(s) de l'en-tête (ligne {header_line}) : "
                f"{', '.join(missing)}. Colonnes attendues : {', '.join(COLUMNS)}.{hint}"
            )
        rows: list[SourceRow] = []
        previous_end = header_line
        for record in source:
            line = previous_end + 1
            previous_end = source.line_num
            if not any(cell.strip() for cell in record):
                continue  # blank lines and lines of separators only (spreadsheet exports add them)
            rows.append(_parse_record(record, len(header), positions, line, today))
    except csv.Error as exc:
        raise UnusableFile(f"structure CSV illisible ligne {source.line_num} ({exc}).") from None
    warnings = []
    if unknown:
        warnings.append(f"Colonne(s) inconnue(s) ignorée(s) : {', '.join(unknown)}.")
    if not rows:
        warnings.append("Le fichier ne contient aucune ligne de données.")
    return ParsedFile(name=name, sha256=hashlib.sha256(content).hexdigest(), delimiter=delimiter,
                      columns=sorted(positions, key=positions.__getitem__), rows=rows, warnings=warnings)


def _parse_record(record: list[str], width: int, positions: dict[str, int], line: int,
                  today: dt.date) -> SourceRow:
    cells = {column: (record[i].strip() if i < len(record) else "") for column, i in positions.items()}
    matricule = cells["matricule"]
    extra = record[width:]
    if len(record) < width or any(cell.strip() for cell in extra):
        return SourceRow(line, matricule, None, [
            f"{len(record)} valeur(s) au lieu de {width} : vérifiez le séparateur et les guillemets."])
    errors: dict[str, str] = {}
    raw: dict[str, Any] = {COLUMNS[c]: value for c, value in cells.items() if COLUMNS[c]}
    for field in ("birth_date", "start_date", "end_date"):
        if raw.get(field):
            raw[field] = _quick_date(raw[field])
    contract = contract_type_from_label(cells["contrat"]) if cells["contrat"] else None
    if contract is not None:
        raw["contract_type"] = contract
    confirm = _parse_bool(cells.get("homonyme_confirme", ""))
    if confirm is None:
        errors["homonyme_confirme"] = "homonyme_confirme : valeur attendue « oui » ou « non »."
    data = None
    try:
        data = services.validate_identity(raw, today=today)
    except ValidationError as exc:
        for field, message in exc.errors.items():
            column = FIELD_COLUMNS.get(field, field)
            errors[column] = f"{column} : {message}"
    if cells["contrat"] and contract is None:
        errors["contrat"] = (f"contrat : type de contrat inconnu {cells['contrat']!r} (attendu : "
                             f"{_accepted_contract_labels()}).")
    if not matricule:
        errors["matricule"] = "matricule : le matricule est obligatoire."
    if errors:
        ordered = [errors[c] for c in COLUMNS if c in errors] + [m for c, m in errors.items() if c not in COLUMNS]
        return SourceRow(line, matricule, None, ordered)
    return SourceRow(line, matricule, data, [], bool(confirm))


# --- phase 2: plan (pure, against an in-memory index) --------------------------------------------------

DedupKey = tuple[str, str, dt.date]


@dataclasses.dataclass(eq=False, slots=True)
class Holder:
    """Who holds an RPPS number or a dedup key: an identity of the directory or an earlier row.

    Holders are compared by identity: each identity or row has exactly one.
    """

    key: str
    public_id: str
    # (given names, usage name, birth name, user name, matricule) of an identity, or (line, matricule)
    # of a row: the label is only built for the few holders that end up in a message.
    about: tuple[Any, ...]

    @property
    def label(self) -> str:
        if self.key.startswith("line:"):
            return f"ligne {self.about[0]} (matricule {self.about[1]})"
        given, usage, birth, user_name, matricule = self.about
        label = f"{first_given_name(given)} {usage or birth} ({user_name}"
        return label + (f", matricule {matricule})" if matricule else ")")


@dataclasses.dataclass
class Existing:
    """What the plan needs to know about an identity already in the directory."""

    id: int
    public_id: str
    user_name: str
    external_id: str | None
    status: str
    version: int
    values: dict[str, Any]
    holder: Holder
    key: DedupKey


@dataclasses.dataclass
class DirectoryIndex:
    """The directory's keys, loaded once; the plan updates it as rows claim numbers and names."""

    by_external_id: dict[str, Existing]
    rpps_holders: dict[str, Holder]
    dedup_holders: dict[DedupKey, list[Holder]]
    user_names: set[str]
    _next_suffix: dict[str, int] = dataclasses.field(default_factory=dict)

    def allocate_user_name(self, base: str) -> str:
        """Return the first free name among ``base``, ``base2``, ``base3``… and mark it taken."""
        if base not in self.user_names:
            self.user_names.add(base)
            return base
        n = self._next_suffix.get(base, 2)
        while f"{base}{n}" in self.user_names:
            n += 1
        self._next_suffix[base] = n + 1
        name = f"{base}{n}"
        self.user_names.add(name)
        return name


def user_name_base(data: services.IdentityData) -> str:
    """Return the user-name stem of an identity: same rule as ``services._suggest_user_name``."""
    family = normalize_name(data.usage_name or data.birth_family_name).replace(" ", "")
    initial = normalize_name(first_given_name(data.given_names))[:1]
    return re.sub(r"[^a-z0-9]", "", f"{initial}{family}")[:40] or "utilisateur"


def dedup_key(birth_family_name: str, given_names: str, birth_date: dt.date) -> DedupKey:
    """Return the key under which two identities are possible homonyms (as ``services.find_duplicates``)."""
    return normalize_name(birth_family_name), normalize_name(first_given_name(given_names)), birth_date


def _comparable(data: services.IdentityData) -> dict[str, Any]:
    out = {f: getattr(data, f) for f in COMPARED_FIELDS}
    for f in _LIST_FIELDS:
        out[f] = tuple(sorted(out[f]))
    return out


def load_index(session: Session) -> DirectoryIndex:
    """Load the directory's keys with four queries (identities, then each kind of link); return the index."""
    t = Identity.__table__
    rows = session.execute(select(
        t.c.id, t.c.public_id, t.c.user_name, t.c.external_id, t.c.status, t.c.version,
        t.c.birth_family_name_norm, t.c.first_given_name_norm, *(t.c[f] for f in _SCALAR_FIELDS),
    )).all()
    links: dict[str, dict[int, list[str]]] = {f: {} for f in _LIST_FIELDS}
    for field, table, column in _LINK_TABLES:
        target = links[field]
        for identity_id, value in session.execute(select(table.c.identity_id, table.c[column])):
            target.setdefault(identity_id, []).append(value)
    index = DirectoryIndex({}, {}, {}, set())
    user_names = index.user_names
    rpps_holders = index.rpps_holders
    dedup_holders = index.dedup_holders
    by_external_id = index.by_external_id
    rpps_at = _SCALAR_FIELDS.index("rpps")
    # Plain tuple unpacking: this loop runs once per identity of the directory (100,000 in a big one).
    for id_, public_id, user_name, external_id, status, version, birth_norm, given_norm, *scalars in rows:
        values = dict(zip(_SCALAR_FIELDS, scalars))
        holder = Holder(f"db:{id_}", public_id, (values["given_names"], values["usage_name"],
                                                 values["birth_family_name"], user_name, external_id))
        user_names.add(user_name)
        rpps = scalars[rpps_at]
        if rpps:
            rpps_holders[rpps] = holder
        key = (birth_norm, given_norm, values["birth_date"])
        dedup_holders.setdefault(key, []).append(holder)
        if external_id is not None:
            for f in _LIST_FIELDS:
                found = links[f].get(id_)
                values[f] = tuple(sorted(found)) if found else ()
            by_external_id[external_id] = Existing(id_, public_id, user_name, external_id, status, version,
                                                   values, holder, key)
    return index


@dataclasses.dataclass
class RejectedRow:
    line: int
    matricule: str
    reasons: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "matricule": self.matricule, "reasons": self.reasons}


@dataclasses.dataclass
class PlannedChange:
    """What happens to one identity: ``created``, ``updated``, ``ended`` or ``unchanged``."""

    line: int
    matricule: str
    action: str
    data: services.IdentityData
    public_id: str
    user_name: str
    status_before: str | None
    status_after: str
    fields: list[str] = dataclasses.field(default_factory=list)
    ends: bool = False
    homonyms: list[str] = dataclasses.field(default_factory=list)
    existing: Existing | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "matricule": self.matricule, "action": self.action,
                               "id": self.public_id, "user_name": self.user_name, "status": self.status_after}
        if self.fields:
            out["fields"] = self.fields
        if self.ends:
            out["end_date"] = self.data.end_date.isoformat() if self.data.end_date else None
        if self.homonyms:
            out["homonym_confirmed"] = True
        return out


@dataclasses.dataclass
class ImportPlan:
    changes: list[PlannedChange]
    rejected: list[RejectedRow]

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)


def _homonym_reason(holders: Sequence[Holder]) -> str:
    who = ", ".join(h.label for h in holders[:3]) + (" …" if len(holders) > 3 else "")
    return (f"homonyme possible de {who} (même nom de naissance, même premier prénom, même date de "
            "naissance) : s'il s'agit d'une autre personne, indiquez « oui » dans la colonne homonyme_confirme.")


def plan_import(parsed: ParsedFile, index: DirectoryIndex, *, today: dt.date) -> ImportPlan:
    """Decide what to do with every row of ``parsed``; return the plan (nothing is written).

    ``index`` is updated as rows claim RPPS numbers, dedup keys and user names, so that later rows of the
    same file are checked against earlier ones exactly as against the directory.
    """
    plan = ImportPlan([], [])
    first_line_of: dict[str, int] = {}
    for row in parsed.rows:
        if row.matricule:
            if row.matricule in first_line_of:
                plan.rejected.append(RejectedRow(row.line, row.matricule, [
                    f"matricule : le matricule {row.matricule} figure déjà ligne {first_line_of[row.matricule]}."]))
                continue
            first_line_of[row.matricule] = row.line
        if row.data is None:
            plan.rejected.append(RejectedRow(row.line, row.matricule, row.errors))
            continue
        existing = index.by_external_id.get(row.matricule)
        if existing is None:
            outcome = _plan_create(row, row.data, index, today)
        else:
            outcome = _plan_update(row, row.data, existing, parsed, index, today)
        if isinstance(outcome, RejectedRow):
            plan.rejected.append(outcome)
        else:
            plan.changes.append(outcome)
    return plan


def _plan_create(row: SourceRow, data: services.IdentityData, index: DirectoryIndex,
                 today: dt.date) -> PlannedChange | RejectedRow:
    reasons = []
    if data.rpps and data.rpps in index.rpps_holders:
        reasons.append(f"rpps : le numéro RPPS {data.rpps} est déjà attribué à {index.rpps_holders[data.rpps].label}.")
    key = dedup_key(data.birth_family_name, data.given_names, data.birth_date)
    homonyms = index.dedup_holders.get(key, [])
    if homonyms and not row.confirm_homonym:
        reasons.append(_homonym_reason(homonyms))
    if reasons:
        return RejectedRow(row.line, row.matricule, reasons)
    public_id = str(uuid.uuid4())
    holder = Holder(f"line:{row.line}", public_id, (row.line, row.matricule))
    if data.rpps:
        index.rpps_holders[data.rpps] = holder
    confirmed = [h.public_id for h in homonyms]
    index.dedup_holders.setdefault(key, []).append(holder)
    status = "pending" if data.start_date and data.start_date > today else "active"
    ends = data.end_date is not None and data.end_date <= today
    return PlannedChange(
        line=row.line, matricule=row.matricule, action="created", data=data, public_id=public_id,
        user_name=index.allocate_user_name(user_name_base(data)), status_before=status,
        status_after="suspended" if ends else status, ends=ends, homonyms=confirmed)


def _plan_update(row: SourceRow, data: services.IdentityData, existing: Existing, parsed: ParsedFile,
                 index: DirectoryIndex, today: dt.date) -> PlannedChange | RejectedRow:
    # An optional column absent from the file says nothing about that field: keep the directory's value.
    kept = {field: existing.values[field] for column, field in COLUMNS.items()
            if field in existing.values and not parsed.has(column)}
    if kept:
        data = dataclasses.replace(data, **{f: list(v) if f in _LIST_FIELDS else v for f, v in kept.items()})
    if data.start_date and data.end_date and data.end_date < data.start_date:
        return RejectedRow(row.line, row.matricule, ["date_fin : la date de fin précède la date d'arrivée."])
    new = _comparable(data)
    changed = [f for f in COMPARED_FIELDS if (new[f] or None) != (existing.values[f] or None)]
    reasons = []
    if "rpps" in changed and data.rpps:
        holder = index.rpps_holders.get(data.rpps)
        if holder is not None and holder.key != existing.holder.key:
            reasons.append(f"rpps : le numéro RPPS {data.rpps} est déjà attribué à {holder.label}.")
    old_key = existing.key
    # The key derives from these three fields only: no need to normalise names again when none changed.
    new_key = (dedup_key(data.birth_family_name, data.given_names, data.birth_date)
               if _DEDUP_FIELDS.intersection(changed) else old_key)
    homonyms: list[Holder] = []
    if new_key != old_key:
        homonyms = [h for h in index.dedup_holders.get(new_key, []) if h.key != existing.holder.key]
        if homonyms and not row.confirm_homonym:
            reasons.append(_homonym_reason(homonyms))
    if reasons:
        return RejectedRow(row.line, row.matricule, reasons)
    ends = (data.end_date is not None and data.end_date <= today and existing.status in ("active", "pending"))
    if not changed and not ends:
        return PlannedChange(row.line, row.matricule, "unchanged", data, existing.public_id, existing.user_name,
                             existing.status, existing.status, existing=existing)
    if "rpps" in changed:
        old_rpps = existing.values["rpps"]
        if old_rpps and index.rpps_holders.get(old_rpps) is existing.holder:
            del index.rpps_holders[old_rpps]
        if data.rpps:
            index.rpps_holders[data.rpps] = existing.holder
    if new_key != old_key:
        holders = index.dedup_holders.get(old_key, [])
        if existing.holder in holders:
            holders.remove(existing.holder)
        index.dedup_holders.setdefault(new_key, []).append(existing.holder)
    # The end date is journaled by its own "ended" event, as services.end does.
    fields = [f for f in changed if not (ends and f == "end_date")]
    return PlannedChange(
        line=row.line, matricule=row.matricule, action="ended" if ends else "updated", data=data,
        public_id=existing.public_id, user_name=existing.user_name, status_before=existing.status,
        status_after="suspended" if ends else existing.status, fields=fields, ends=ends,
        homonyms=[h.public_id for h in homonyms], existing=existing)


# --- phase 3: apply (bulk writes in the caller's transaction) ------------------------------------------

def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _identity_values(data: services.IdentityData) -> dict[str, Any]:
    return {
        "birth_family_name": data.birth_family_name,
        "usage_name": data.usage_name,
        "given_names": data.given_names,
        "birth_date": data.birth_date,
        "birth_place": data.birth_place,
        "birth_country": data.birth_country,
        "gender": data.gender,
        "email": data.email,
        "rpps": data.rpps,
        "population": "rpps" if data.rpps else "local",
        "contract_type": data.contract_type,
        "start_date": data.start_date,
        "end_date": data.end_date,
        "birth_family_name_norm": normalize_name(data.birth_family_name),
        "usage_name_norm": normalize_name(data.usage_name) if data.usage_name else None,
        "first_given_name_norm": normalize_name(first_given_name(data.given_names)),
    }


def _ensure_references(session: Session, changes: Sequence[PlannedChange]) -> None:
    """Create the establishments and units that the rows mention and the directory does not know yet."""
    finess = {f for c in changes for f in c.data.establishments}
    codes = {u for c in changes for u in c.data.units}
    if finess:
        known = set(session.scalars(select(Establishment.finess)))
        missing = sorted(finess - known)
        for chunk in _chunks(missing):
            session.execute(insert(Establishment.__table__), [{"finess": f, "name": ""} for f in chunk])
    if codes:
        known = set(session.scalars(select(OrgUnit.code)))
        missing = sorted(codes - known)
        for chunk in _chunks(missing):
            session.execute(insert(OrgUnit.__table__),
                            [{"code": c, "name": c, "kind": "service", "parent_id": None} for c in chunk])


def _copy_available(session: Session) -> bool:
    """True on PostgreSQL through psycopg, where rows can be streamed with COPY."""
    dialect = session.get_bind().dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


def _copy_rows(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Stream ``rows`` (all with the same keys) into ``table`` with COPY, inside the session's transaction.

    On PostgreSQL, ``executemany`` still runs one INSERT per row on the server: for the 100,000 identities
    and 400,000 link rows of a large first import, COPY takes less than half the time.
    """
    columns = list(rows[0])
    preparer = session.get_bind().dialect.identifier_preparer
    statement = (f"COPY {preparer.format_table(table)} ({', '.join(preparer.quote(c) for c in columns)}) "
                 "FROM STDIN")
    connection = session.connection()
    driver_errors = connection.dialect.loaded_dbapi
    try:
        with connection.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row([row[c] for c in columns])
    except driver_errors.IntegrityError as exc:
        # Reported like the executemany path, so that callers handle one kind of error.
        raise IntegrityError(statement, None, exc) from exc


def _bulk_insert(session: Session, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (all with the same keys): COPY on PostgreSQL, chunked ``executemany`` elsewhere."""
    if not rows:
        return
    if _copy_available(session):
        _copy_rows(session, table, rows)
        return
    for chunk in _chunks(rows, CHUNK * 5):
        session.execute(insert(table), chunk)


def _reserve_ids(session: Session, table: Any, count: int) -> list[int] | None:
    """Draw ``count`` ids from the PostgreSQL sequence of ``table.id``; None when there is no sequence."""
    sequence = session.execute(text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table.name}).scalar()
    if not sequence:
        return None
    return list(session.scalars(text("SELECT nextval(CAST(:sequence AS regclass)) FROM generate_series(1, :n)"),
                                {"sequence": sequence, "n": count}))


def _insert_identities(session: Session, created: Sequence[PlannedChange], now: dt.datetime) -> dict[str, int]:
    """Insert the new identities; return their database ids by public id."""
    table = Identity.__table__
    rows = []
    for change in created:
        row = _identity_values(change.data)
        row.update(public_id=change.public_id, user_name=change.user_name, external_id=change.matricule,
                   status=change.status_after, status_changed_at=now, created_at=now, updated_at=now,
                   status_reason=END_REASON if change.ends else None,
                   # create (1), then end (+1) and suspend (+1), as the per-identity services count it.
                   version=3 if change.ends else 1)
        rows.append(row)
    if _copy_available(session):
        # Ids drawn from the sequence first: the link rows need them, and COPY returns nothing.
        reserved = _reserve_ids(session, table, len(rows))
        if reserved is not None:
            for row, id_ in zip(rows, reserved):
                row["id"] = id_
            _copy_rows(session, table, rows)
            return {row["public_id"]: row["id"] for row in rows}
    ids: dict[str, int] = {}
    with_returning = bool(session.get_bind().dialect.insert_executemany_returning)
    for chunk in _chunks(rows):
        if with_returning:
            result = session.execute(insert(table).returning(table.c.id, table.c.public_id), chunk)
            ids.update({public_id: id_ for id_, public_id in result})
        else:
            session.execute(insert(table), chunk)
            wanted = [r["public_id"] for r in chunk]
            ids.update({p: i for i, p in session.execute(
                select(table.c.id, table.c.public_id).where(table.c.public_id.in_(wanted)))})
    return ids


def _write_links(session: Session, targets: Sequence[tuple[int, PlannedChange]], *, replace: bool) -> None:
    """Insert the link rows of ``targets``; with ``replace``, first delete the kinds of links that changed."""
    for field, table, column in _LINK_TABLES:
        concerned = [(i, c) for i, c in targets if not replace or field in c.fields]
        if not concerned:
            continue
        if replace:
            for chunk in _chunks([i for i, _ in concerned]):
                session.execute(delete(table).where(table.c.identity_id.in_(chunk)))
        _bulk_insert(session, table,
                     [{"identity_id": i, column: value} for i, c in concerned for value in getattr(c.data, field)])


def _update_identities(session: Session, changes: Sequence[PlannedChange], now: dt.datetime) -> None:
    """Rewrite the changed identities, refusing the whole import if one changed since it was read."""
    table = Identity.__table__
    columns = list(_identity_values(changes[0].data))
    stmt = (update(table)
            .where(table.c.id == bindparam("p_id"), table.c.version == bindparam("p_version"))
            .values({c: bindparam(f"p_{c}") for c in columns}
                    | {"version": bindparam("p_new_version"), "updated_at": bindparam("p_updated_at")}))
    ended = [c for c in changes if c.ends]
    status_stmt = (update(table).where(table.c.id == bindparam("p_id"))
                   .values(status="suspended", status_reason=END_REASON, status_changed_at=bindparam("p_now")))
    sane_rowcount = session.get_bind().dialect.supports_sane_multi_rowcount
    for chunk in _chunks(changes):
        params = []
        for change in chunk:
            assert change.existing is not None
            # update (+1 when fields changed), end (+1) and suspend (+1), as the per-identity services count.
            bump = (1 if change.fields else 0) + (2 if change.ends else 0)
            values = {f"p_{k}": v for k, v in _identity_values(change.data).items()}
            values.update(p_id=change.existing.id, p_version=change.existing.version,
                          p_new_version=change.existing.version + bump, p_updated_at=now)
            params.append(values)
        result = session.execute(stmt, params)
        if sane_rowcount and result.rowcount != len(params):  # type: ignore[attr-defined]
            raise Conflict("Des identités ont été modifiées pendant l'import : relancez-le.", code="import_conflict")
    for chunk in _chunks(ended):
        session.execute(status_stmt, [{"p_id": c.existing.id, "p_now": now} for c in chunk if c.existing])


def _journal(changes: Sequence[PlannedChange], actor: str) -> list[audit.PendingEvent]:
    events: list[audit.PendingEvent] = []
    for c in changes:
        if c.action == "created":
            events.append(audit.PendingEvent(tags.DIRECTORY_IDENTITY_CREATED, actor, c.public_id, details={
                "user_name": c.user_name, "status": c.status_before, "population": "rpps" if c.data.rpps else "local",
                "external_id": c.matricule, "line": c.line}))
        elif c.fields:
            events.append(audit.PendingEvent(tags.DIRECTORY_IDENTITY_UPDATED, actor, c.public_id,
                                             details={"fields": c.fields, "line": c.line}))
        if c.homonyms:
            events.append(audit.PendingEvent(tags.DIRECTORY_IDENTITY_HOMONYM_CONFIRMED, actor, c.public_id,
                                             details={"homonyms": c.homonyms, "line": c.line}))
        if c.ends:
            end_date = c.data.end_date.isoformat() if c.data.end_date else None
            events.append(audit.PendingEvent(tags.DIRECTORY_IDENTITY_ENDED, actor, c.public_id,
                                             details={"end_date": end_date, "reason": END_REASON}))
            events.append(audit.PendingEvent(tags.DIRECTORY_IDENTITY_SUSPENDED, actor, c.public_id, details={
                "from": c.status_before, "to": "suspended", "reason": END_REASON}))
    return events


@contextlib.contextmanager
def _large_page_cache(session: Session) -> Iterator[None]:
    """On SQLite, give this connection a 128 MiB page cache while the import writes, then restore it.

    With its default 2 MiB cache SQLite rereads index pages for every row when 100,000 identities (and
    their 17 indexes) are inserted; a larger cache takes a third off the insert time. Other databases
    are left alone.
    """
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    previous = session.execute(text("PRAGMA cache_size")).scalar()
    session.execute(text("PRAGMA cache_size=-131072"))
    try:
        yield
    finally:
        session.execute(text(f"PRAGMA cache_size={int(previous or -2000)}"))


def apply_plan(session: Session, plan: ImportPlan, *, actor: str, summary: dict[str, Any]) -> int:
    """Write ``plan`` in ``session`` (not committed here); return the number of journal events appended.

    Raises :class:`Conflict` when the directory changed between reading and writing (another process
    created the same matricule or RPPS, or modified an identity): the caller's transaction is then to be
    rolled back, and nothing is written.
    """
    now = utcnow()
    changes = [c for c in plan.changes if c.action != "unchanged"]
    created = [c for c in changes if c.action == "created"]
    modified = [c for c in changes if c.action != "created"]
    with _large_page_cache(session):
        try:
            _ensure_references(session, changes)
            if created:
                ids = _insert_identities(session, created, now)
                _write_links(session, [(ids[c.public_id], c) for c in created], replace=False)
            if modified:
                _update_identities(session, modified, now)
                _write_links(session, [(c.existing.id, c) for c in modified if c.existing], replace=True)
        except IntegrityError as exc:
            raise Conflict("L'annuaire a été modifié pendant l'import (matricule, RPPS ou identifiant déjà "
                           "pris) : relancez l'import.", code="import_conflict") from exc
        events = _journal(changes, actor)
        events.append(audit.PendingEvent(tags.DIRECTORY_IMPORT_APPLIED, actor, None, details=summary))
        return audit.record_many(session, events)


# --- orchestration -------------------------------------------------------------------------------------

MODES = {"all_or_nothing": "tout ou rien", "partial": "partiel (lignes valides seulement)",
         "dry_run": "simulation (rien n'est écrit)"}


@dataclasses.dataclass
class ImportReport:
    """The outcome of an import, as printed by the command line."""

    file: str
    mode: str
    today: dt.date
    rows: int
    applied: bool
    plan: ImportPlan
    warnings: list[str]
    events: int = 0

    @property
    def exit_code(self) -> int:
        """0 when every row was applied (or would be, in a dry run), 1 when rows were rejected."""
        return 1 if self.plan.rejected else 0

    def counts(self) -> dict[str, int]:
        return {"created": self.plan.count("created"), "updated": self.plan.count("updated"),
                "ended": self.plan.count("ended"), "unchanged": self.plan.count("unchanged"),
                "rejected": len(self.plan.rejected)}

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON report: counts, rejected rows with their line, and what is (or would be) done."""
        return {
            "file": self.file,
            "mode": self.mode,
            "today": self.today.isoformat(),
            "applied": self.applied,
            "rows": self.rows,
            "counts": self.counts(),
            "rejected": [r.as_dict() for r in self.plan.rejected],
            "actions": [c.as_dict() for c in self.plan.changes if c.action != "unchanged"],
            "warnings": self.warnings,
            "journal_events": self.events,
            "exit_code": self.exit_code,
        }


def run_import(session: Session, parsed: ParsedFile, *, today: dt.date, dry_run: bool = False,
               partial: bool = False, actor: str | None = None) -> ImportReport:
    """Plan the import of ``parsed`` against the directory and, unless refused, write it in ``session``.

    Default mode is all-or-nothing: one rejected row and nothing is written. ``partial`` writes the valid
    rows; ``dry_run`` writes nothing. The caller commits (one transaction). Returns the report; raises
    :class:`Conflict` when the directory changed while the import was being written.
    """
    mode = "dry_run" if dry_run else "partial" if partial else "all_or_nothing"
    with _gc_paused():
        index = load_index(session)
        plan = plan_import(parsed, index, today=today)
    report = ImportReport(file=parsed.name, mode=mode, today=today, rows=len(parsed.rows), applied=False,
                          plan=plan, warnings=list(parsed.warnings))
    if dry_run or (plan.rejected and not partial):
        return report
    if not any(c.action != "unchanged" for c in plan.changes):
        # Nothing to write: an unchanged re-import leaves no trace, so that it can run every night.
        return report
    summary = {"file": parsed.name, "sha256": parsed.sha256, "mode": mode, "rows": len(parsed.rows),
               **report.counts(), "rejected_lines": [r.line for r in plan.rejected][:200]}
    with _gc_paused():
        report.events = apply_plan(session, plan, actor=actor or f"import:{parsed.name}", summary=summary)
    report.applied = True
    return report


def import_file(session: Session, path: str | Path, *, today: dt.date | None = None, dry_run: bool = False,
                partial: bool = False) -> ImportReport:
    """Read, plan and apply the HR file at ``path`` in ``session``; return the report.

    Raises :class:`UnusableFile` (nothing read from or written to the database) or :class:`Conflict`.
    """
    today = today or dt.date.today()
    parsed = read_hr_file(path, today=today)
    return run_import(session, parsed, today=today, dry_run=dry_run, partial=partial)
