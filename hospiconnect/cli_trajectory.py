"""``hospiconnect trajectory …``: daily snapshots, rebuilding past days, the report for scripts and cron, and
the RSSI's targets.

Commands are thin: they parse options, call one service in one transaction, and print either a French summary
or (``--json``) one JSON document on stdout. Progress and errors go to stderr; an error exits with 1 (3 when the
database is unreachable) and changes nothing. The CLI acts as the operator (actor ``cli``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import click

from hospiconnect.cli_common import Group, emit, runtime_of
from hospiconnect.db import utcnow
from hospiconnect.errors import ValidationError
from hospiconnect.policies import Policy, load_policy
from hospiconnect.trajectory import exports, services, snapshots
from hospiconnect.web import trajectory_pages

ACTOR = "cli"
FORMATS = ("json", "csv", "html")


def _policy(ctx: click.Context) -> Policy:
    return load_policy(runtime_of(ctx).settings.policy_file)


def _today(policy: Policy) -> dt.date:
    return policy.local_day(utcnow())


def _day(value: str | None, field: str) -> dt.date | None:
    if value is None or not value.strip():
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ValidationError(f"{field} : date invalide « {value.strip()} » (attendu AAAA-MM-JJ).", field=field,
                              code="bad_date") from None


def _plain(value: Any) -> Any:
    """A service's report (a dataclass or an object with ``as_dict``) as JSON-ready values."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _write(chunks: Iterable[str], output: Path | None) -> None:
    """Write text chunks to ``output`` (UTF-8) or stdout, as they come."""
    if output is None:
        for chunk in chunks:
            click.echo(chunk, nl=False)
        return
    with output.open("w", encoding="utf-8", newline="") as handle:
        for chunk in chunks:
            handle.write(chunk)


@click.group(cls=Group)
def trajectory() -> None:
    """Trajectoire de sécurisation des MIE : relevés quotidiens, rapport et objectifs du RSSI."""


# --- snapshots -------------------------------------------------------------------------------------------------


@trajectory.command("snapshot")
@click.option("--day", default=None, help="Jour du relevé (AAAA-MM-JJ) ; par défaut aujourd'hui.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def trajectory_snapshot(ctx: click.Context, day: str | None, as_json: bool) -> None:
    """Prend le relevé d'un jour (le remplace s'il existe : peut être relancé sans effet de bord)."""
    rt = runtime_of(ctx)
    policy = _policy(ctx)
    today = _today(policy)
    when = _day(day, "day") or today
    if when > today:
        raise ValidationError(f"day : le {when:%d/%m/%Y} n'est pas encore arrivé.", field="day", code="future_day")
    with rt.db.session() as session:
        data = {"day": when.isoformat(), **_plain(snapshots.take_snapshot(session, policy, when))}
    emit(data, as_json, lambda d: f"Relevé du {when:%d/%m/%Y} enregistré ({d.get('rows', 0)} valeurs) : "
                                  + _headline_fr(d))


def _headline_fr(counts: dict[str, Any]) -> str:
    active = counts.get("active", 0)
    share = services.share(counts.get("compliant", 0), active)
    return (f"{active} identité(s) active(s), {counts.get('compliant', 0)} conforme(s)"
            + (f" ({exports.fr_decimal(share)} %)" if share is not None else "")
            + f", {counts.get('pending', 0)} en cours d'enrôlement, {counts.get('exempt', 0)} en dérogation, "
              f"{counts.get('non_compliant', 0)} non conforme(s).")


class _Progress:
    """Reports ``done/total`` days on stderr: on a terminal one line rewritten at most every half second; in a log
    (cron) a line every 10 seconds. The last day is always reported."""

    def __init__(self) -> None:
        self.tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self.every = 0.5 if self.tty else 10.0
        self.last = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < self.every:
            return
        self.last = now
        self.shown = True
        percent = 100 * done // total if total else 100
        line = f"Reconstitution : {done}/{total} jour(s) ({percent} %)"
        if self.tty:
            click.echo(f"\r{line}", err=True, nl=False)
        else:
            click.echo(line, err=True)

    def close(self) -> None:
        if self.shown and self.tty:
            click.echo("", err=True)


@trajectory.command("backfill")
@click.option("--from", "day_from", required=True, help="Premier jour à reconstituer (AAAA-MM-JJ).")
@click.option("--to", "day_to", default=None, help="Dernier jour (AAAA-MM-JJ) ; par défaut aujourd'hui.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def trajectory_backfill(ctx: click.Context, day_from: str, day_to: str | None, as_json: bool) -> None:
    """Reconstitue les relevés des jours passés à partir de l'historique conservé (MIE, annuaire, journal)."""
    rt = runtime_of(ctx)
    policy = _policy(ctx)
    today = _today(policy)
    first = _day(day_from, "from")
    last = _day(day_to, "to") or today
    assert first is not None
    if first > last:
        raise ValidationError("La période est vide : --from doit précéder --to.", field="from", code="empty_period")
    if last > today:
        raise ValidationError(f"--to : le {last:%d/%m/%Y} n'est pas encore arrivé.", field="to", code="future_day")
    progress = _Progress()
    try:
        with rt.db.session() as session:
            data = {"from": first.isoformat(), "to": last.isoformat(),
                    **_plain(snapshots.backfill(session, policy, first, last, progress=progress))}
    finally:
        progress.close()
    emit(data, as_json, lambda d: f"Relevés reconstitués du {first:%d/%m/%Y} au {last:%d/%m/%Y} "
                                  f"({d.get('days', (last - first).days + 1)} jour(s), {d.get('rows', 0)} valeurs). "
                                  f"Au {last:%d/%m/%Y} : " + _headline_fr(d.get("last") or {}))


# --- report ----------------------------------------------------------------------------------------------------


@trajectory.command("report")
@click.option("--as-of", "as_of", default=None, help="Date du rapport (AAAA-MM-JJ) ; par défaut aujourd'hui.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True,
              help="json (scripts), csv (tableur : chiffres du jour par population) ou html (rapport imprimable).")
@click.option("--output", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
              help="Fichier où écrire le rapport ; par défaut la sortie standard.")
@click.pass_context
def trajectory_report(ctx: click.Context, as_of: str | None, fmt: str, output: Path | None) -> None:
    """Rapport de la trajectoire : chiffres clés, jalons et écarts, projection, unités en retard."""
    rt = runtime_of(ctx)
    policy = _policy(ctx)
    when = _day(as_of, "as-of") or _today(policy)
    with rt.db.session() as session:
        data = services.report(session, policy, when)
        # The printable report draws the same charts as the page /securite/trajectoire/rapport.
        drawn = trajectory_pages.report_charts(session, policy, data) if fmt == "html" else {}
    if fmt == "json":
        if output is None:
            emit(data, True)
        else:
            import json

            _write([json.dumps(data, ensure_ascii=False, indent=2, default=str), "\n"], output)
    elif fmt == "csv":
        _write(exports.report_csv(data), output)
    else:
        _write([exports.report_html(data, charts=drawn)], output)
    if data["day"] is None:
        click.echo(f"Attention : aucun relevé au {when:%d/%m/%Y} ou avant ; lancez « hospiconnect trajectory "
                   "snapshot » ou « backfill ».", err=True)


# --- targets ---------------------------------------------------------------------------------------------------


@trajectory.group("target", cls=Group)
def target() -> None:
    """Objectifs datés (jalons) : ceux du fichier de politique et ceux ajoutés par le RSSI."""


def _target_line(d: dict[str, Any]) -> str:
    share = "—" if d["current_share"] is None else f"{exports.fr_decimal(d['current_share'])} %"
    state = "atteint" if d["met"] else ("en retard" if d["overdue"] else "en cours")
    origin = "politique" if d["source"] == "policy" else "RSSI"
    return (f"{d['id']}  [{origin}, {state}]  {d['percent']} % au {exports.fr_date(dt.date.fromisoformat(d['due']))}"
            f" — {d['scope_fr']} — actuel {share} — « {d['label']} »")


@target.command("add")
@click.option("--label", default=None, help="Libellé de l'objectif ; obligatoire.")
@click.option("--percent", default=None, help="Part à atteindre, de 1 à 100 ; obligatoire.")
@click.option("--due", default=None, help="Échéance (AAAA-MM-JJ) ; obligatoire.")
@click.option("--dimension", default="all", show_default=True,
              help="all, rpps, contract_type, establishment, pole, unit ou role.")
@click.option("--value", default="", help="Valeur de la dimension (with/without, code d'unité, type de contrat…).")
@click.option("--indicator", default="compliant", show_default=True,
              help="compliant, proofed, rpps_linked ou psc_paired.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def target_add(ctx: click.Context, label: str | None, percent: str | None, due: str | None, dimension: str,
               value: str, indicator: str, as_json: bool) -> None:
    """Ajoute un objectif daté (par exemple 100 % du personnel infirmier au 31 mars)."""
    rt = runtime_of(ctx)
    policy = _policy(ctx)
    today = _today(policy)
    with rt.db.session() as session:
        row = services.add_target(session, label=label, percent=percent, due=due, dimension=dimension, value=value,
                                  indicator=indicator, actor=ACTOR, today=today)
        data = services.target_as_dict(row)
    emit(data, as_json, lambda d: f"Objectif ajouté : {d['id']} — {d['percent']} % au "
                                  f"{exports.fr_date(dt.date.fromisoformat(d['due']))} — « {d['label']} »")


@target.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def target_list(ctx: click.Context, as_json: bool) -> None:
    """Liste les objectifs (politique puis RSSI) avec l'écart au dernier relevé."""
    rt = runtime_of(ctx)
    policy = _policy(ctx)
    with rt.db.session() as session:
        rows = [t.as_dict() for t in services.targets(session, policy, _today(policy))]
    emit(rows, as_json, lambda rs: "\n".join(_target_line(r) for r in rs) or "Aucun objectif.")


@target.command("remove")
@click.argument("target_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def target_remove(ctx: click.Context, target_id: str, as_json: bool) -> None:
    """Retire un objectif ajouté par le RSSI (ceux du fichier de politique se retirent du fichier)."""
    rt = runtime_of(ctx)
    policy = _policy(ctx)
    with rt.db.session() as session:
        row = services.remove_target(session, target_id, actor=ACTOR, policy=policy)
        data = services.target_as_dict(row)
    emit(data, as_json, lambda d: f"Objectif {d['id']} retiré.")
