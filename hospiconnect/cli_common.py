"""Helpers shared by the command-line modules."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click
from sqlalchemy.exc import OperationalError

from hospiconnect.crypto import KeyFileError
from hospiconnect.errors import HospiConnectError
from hospiconnect.runtime import Runtime
from hospiconnect.settings import Settings, SettingsError

EXIT_ERROR = 1
EXIT_UNAVAILABLE = 3


def runtime_of(ctx: click.Context) -> Runtime:
    obj = ctx.find_root().obj
    if obj is None:
        obj = ctx.find_root().obj = Runtime(Settings.from_env())
    return obj


def emit(data: Any, as_json: bool, human: Callable[[Any], str] | str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    elif callable(human):
        click.echo(human(data))
    elif human is not None:
        click.echo(human)
    else:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def fail(message: str, code: int = EXIT_ERROR) -> None:
    click.echo(f"Erreur : {message}", err=True)
    sys.exit(code)


class Group(click.Group):
    """Turns expected failures into one French line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HospiConnectError as exc:
            fail(exc.message)
        except KeyFileError as exc:
            fail(str(exc))
        except SettingsError as exc:
            fail(str(exc))
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else exc.__class__.__name__
            fail(f"base de données injoignable ({reason}).", EXIT_UNAVAILABLE)
