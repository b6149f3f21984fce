"""When will a population reach its target at the current pace? (pure: plain values in, plain values out)

The method is deliberately simple and stated to the reader in French (:attr:`Projection.method_fr`): an
ordinary least-squares straight line through the daily compliant shares (%) of the last ``window_weeks`` weeks,
extended until it reaches the target. Days are the x axis in calendar days, so a gap in the snapshots (a day
the job did not run) leaves the slope right instead of squeezing time. A line says "at the current pace" and no
more: it is a pace, not a forecast, and the pages say so.

Cases, each with a French explanation (:attr:`Projection.explanation_fr`):

* fewer than two weeks covered by the points of the window → not computable;
* the latest share already at or above the target → reached (``reaches_on``: the day since which every point
  has stayed at or above it);
* a slope that is flat or falling → not reachable at the current pace;
* a date more than :data:`MAX_YEARS` years ahead → not reachable (a date in 2090 would be noise, not a plan);
* otherwise ``reaches_on``: the first day on which the line is at or above the target.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any, Iterable

DEFAULT_WINDOW_WEEKS = 8
#: The points of the window must cover at least this many days for a line to mean anything.
MIN_DAYS = 14
#: Beyond this many years the date is not shown: "not reachable at the current pace".
MAX_YEARS = 10
# Slopes smaller than this (percentage points per day) are flat: floating-point noise of a constant series.
_FLAT = 1e-9


def _fr_date(day: dt.date) -> str:
    return f"{day:%d/%m/%Y}"


def _fr_number(value: float, digits: int = 1) -> str:
    """``12.50`` → ``12,5``; ``100.0`` → ``100`` (French decimal comma, no trailing zeros)."""
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text.replace(".", ",")


@dataclasses.dataclass(frozen=True)
class Projection:
    """The outcome of :func:`project`.

    * ``method_fr``: the method in French, with the number of points used;
    * ``slope_per_day``: percentage points per day of the fitted line (None when not computable);
    * ``reaches_on``: the day the target is (or was) reached, None when not reachable or not computable;
    * ``reachable``: True when ``reaches_on`` is a date (already reached included);
    * ``points``: the (day, share %) points of the window that the line was fitted on.

    Also: ``computable``; ``reached`` (already at the target); ``explanation_fr`` (one
    French sentence for the pages and the report); ``target``; ``intercept`` (the line's value on the first day
    of the window) and ``line``: two (day, share %) points of the fitted line, from the first point of the
    window to ``reaches_on`` (or to ``today`` when there is no date), to draw it.
    """

    method_fr: str
    slope_per_day: float | None
    reaches_on: dt.date | None
    reachable: bool
    points: list[tuple[dt.date, float]]
    computable: bool = True
    reached: bool = False
    explanation_fr: str = ""
    target: float = 100.0
    intercept: float | None = None
    line: list[tuple[dt.date, float]] = dataclasses.field(default_factory=list)

    @property
    def slope_per_week(self) -> float | None:
        return None if self.slope_per_day is None else self.slope_per_day * 7

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (dates in ISO form)."""
        return {
            "method_fr": self.method_fr, "computable": self.computable, "reachable": self.reachable,
            "reached": self.reached, "target": self.target,
            "slope_per_day": self.slope_per_day, "slope_per_week": self.slope_per_week,
            "reaches_on": self.reaches_on.isoformat() if self.reaches_on else None,
            "explanation_fr": self.explanation_fr,
            "points": [[d.isoformat(), v] for d, v in self.points],
            "line": [[d.isoformat(), v] for d, v in self.line],
        }


def fit_line(points: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """Return ``(intercept, slope)`` of the least-squares line through ``points`` (x, y).

    Raises ValueError for fewer than two distinct x values (no line is defined).
    """
    pts = list(points)
    n = len(pts)
    if n < 2:
        raise ValueError("at least two points are needed")
    mean_x = sum(x for x, _ in pts) / n
    mean_y = sum(y for _, y in pts) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in pts)
    if sxx == 0:
        raise ValueError("the points share one x value")
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in pts)
    slope = sxy / sxx
    return mean_y - slope * mean_x, slope


def _window(series: Iterable[tuple[dt.date, float]], today: dt.date,
            window_weeks: int) -> list[tuple[dt.date, float]]:
    """The points of the last ``window_weeks`` weeks up to ``today`` included, one per day (the last one given
    for a day wins), in day order."""
    first = today - dt.timedelta(days=window_weeks * 7 - 1)
    by_day: dict[dt.date, float] = {}
    for day, share in series:
        if first <= day <= today and share is not None:
            by_day[day] = float(share)
    return sorted(by_day.items())


def _count(n: int, word: str) -> str:
    # French: 0 and 1 take the singular.
    return f"{n} {word}{'s' if n >= 2 else ''}"


def _method(window_weeks: int, count: int) -> str:
    weeks = "la dernière semaine" if window_weeks == 1 else f"les {window_weeks} dernières semaines"
    return f"droite des moindres carrés sur {weeks} ({_count(count, 'point')})"


def _held_since(points: list[tuple[dt.date, float]], target: float) -> dt.date:
    """The first day of the final run of points at or above ``target``."""
    since = points[-1][0]
    for day, share in reversed(points):
        if share < target:
            break
        since = day
    return since


def project(series: list[tuple[dt.date, float]], *, target: float = 100.0,
            window_weeks: int = DEFAULT_WINDOW_WEEKS, today: dt.date) -> Projection:
    """Project when the share (%) reaches ``target`` at the pace of the last ``window_weeks`` weeks.

    ``series``: (day, share %) points, in any order; points after ``today`` or before the window are ignored.
    Never raises for a short, flat or falling series: the outcome says why there is no date.
    """
    if window_weeks < 1:
        raise ValueError("window_weeks must be at least 1")
    points = _window(series, today, window_weeks)
    method = _method(window_weeks, len(points))
    base = {"method_fr": method, "points": points, "target": target}
    span = (points[-1][0] - points[0][0]).days + 1 if points else 0
    if len(points) < 2 or span < MIN_DAYS:
        covered = _count(len(points), "point") + (f" sur {_count(span, 'jour')}" if points else "")
        return Projection(slope_per_day=None, reaches_on=None, reachable=False, computable=False,
                          explanation_fr=(f"Projection impossible : historique insuffisant ({covered} ; il faut "
                                          f"au moins 2 semaines de relevés)."), **base)

    origin = points[0][0]
    intercept, slope = fit_line(((d - origin).days, share) for d, share in points)

    def on_line(day: dt.date) -> float:
        return intercept + slope * (day - origin).days

    last_day, last_share = points[-1]
    if last_share >= target:
        since = _held_since(points, target)
        return Projection(slope_per_day=slope, reaches_on=since, reachable=True, reached=True,
                          intercept=intercept, line=[(origin, on_line(origin)), (last_day, on_line(last_day))],
                          explanation_fr=(f"Objectif de {_fr_number(target)} % atteint "
                                          f"(depuis le {_fr_date(since)} au moins)."), **base)
    pace = f"{_fr_number(slope * 7, 2)} point{'s' if abs(slope * 7) >= 2 else ''} par semaine"
    if slope <= _FLAT:
        trend = "stable" if abs(slope) <= _FLAT else f"en baisse ({pace})"
        return Projection(slope_per_day=0.0 if abs(slope) <= _FLAT else slope, reaches_on=None, reachable=False,
                          intercept=intercept, line=[(origin, on_line(origin)), (today, on_line(today))],
                          explanation_fr=(f"Objectif non atteignable au rythme actuel : la part est {trend} "
                                          f"sur la période."), **base)
    crossing = (target - intercept) / slope  # days after origin, may be negative or huge
    limit = today + dt.timedelta(days=round(MAX_YEARS * 365.25))
    if crossing > (limit - origin).days:
        return Projection(slope_per_day=slope, reaches_on=None, reachable=False, intercept=intercept,
                          line=[(origin, on_line(origin)), (today, on_line(today))],
                          explanation_fr=(f"Objectif non atteignable au rythme actuel ({pace}) : il faudrait plus "
                                          f"de {MAX_YEARS} ans."), **base)
    reaches_on = origin + dt.timedelta(days=math.ceil(crossing - 1e-9))
    # The line may cross the target before the last point while the observed share is still below it (a fast
    # start, then a stall): the earliest honest date is the day after that observation.
    reaches_on = max(reaches_on, last_day + dt.timedelta(days=1))
    return Projection(slope_per_day=slope, reaches_on=reaches_on, reachable=True, intercept=intercept,
                      line=[(origin, on_line(origin)), (reaches_on, on_line(reaches_on))],
                      explanation_fr=(f"Au rythme actuel ({pace}), l'objectif de {_fr_number(target)} % serait "
                                      f"atteint le {_fr_date(reaches_on)}."), **base)
