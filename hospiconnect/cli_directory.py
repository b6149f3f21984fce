"""``hospiconnect directory …`` commands."""

from __future__ import annotations

import click

from hospiconnect.cli_common import Group


@click.group(cls=Group)
def directory() -> None:
    """Annuaire local des professionnels."""
