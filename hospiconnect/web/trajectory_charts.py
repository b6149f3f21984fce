"""The charts of the RSSI's trajectory pages, drawn on the server as SVG by pygal (plain values in, SVG text out).

Each chart is served as its own ``image/svg+xml`` response (:mod:`hospiconnect.web.trajectory_pages`) and shown
with ``<img alt="…">``, its numbers repeated in a table next to it; the printable report inlines the same SVG.
pygal writes its look as a ``<style>`` element inside the SVG and, unless told otherwise, a ``<script>`` with its
configuration and a link to its tooltip script on a CDN: ``js=[]`` drops the link and :func:`_without_scripts`
the configuration, so the SVG needs no more than ``style-src 'unsafe-inline'`` (:data:`SVG_CSP`) and inlines
into the report page without a script for the page's policy to refuse.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from typing import Any, Iterable, Sequence

import pygal
from pygal.style import Style

# Importing pygal appends to sys.meta_path a finder for its map plugins (pygal.maps.*, unused here) that has only
# the import API removed in Python 3.12 (find_module, no find_spec): any code that walks sys.meta_path for a
# spec — pytest's importlib mode, for one — then fails on it. The charts do not need it.
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PluginImportFixer"
                    or type(f).__module__ != "pygal"]

#: The Content-Security-Policy of a chart response: inline styles (pygal's <style>), nothing else at all.
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'"
#: How far past the last snapshot the coverage chart reaches to show a projected date or a milestone.
HORIZON_DAYS = 730
#: Bars of one breakdown chart at most (the units' chart keeps those with the most people to cover).
MAX_BARS = 30
_LABEL_CHARS = 42

# The application's colours (static/style.css): accent, then warning (projection), then success (milestones).
STYLE = Style(
    background="#ffffff", plot_background="#ffffff", foreground="#1b1b1b", foreground_strong="#1b1b1b",
    foreground_subtle="#d9d9d9", opacity="1", opacity_hover="1", transition="none",
    colors=("#000091", "#b34000", "#18753c", "#6a6af4", "#ce0500"),
    font_family='system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
    title_font_size=15, label_font_size=12, major_label_font_size=12, legend_font_size=13,
    value_font_size=12, value_label_font_size=12, no_data_font_size=18, stroke_width="2.5",
    stroke_width_hover="2.5", guide_stroke_dasharray="none", major_guide_stroke_dasharray="none",
    guide_stroke_color="#d9d9d9", major_guide_stroke_color="#bdbdbd",
)


def fr_percent(value: float | None) -> str:
    """``62.5`` → « 62,5 % », ``100.0`` → « 100 % » (French decimal comma); None → « — »."""
    if value is None:
        return "—"
    text = f"{value:.1f}".removesuffix(".0")
    return text.replace(".", ",") + "\u00a0%"


def fr_day(day: dt.date) -> str:
    return f"{day:%d/%m/%Y}"


def _without_scripts(root: Any) -> Any:
    """pygal's XML filter: remove every ``<script>`` (its configuration, dead without its tooltip script)."""
    for parent in list(root.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    return root


def _config(**options: Any) -> dict[str, Any]:
    return {"style": STYLE, "js": [], "disable_xml_declaration": True, "explicit_size": True,
            "no_data_text": "Aucun relevé", "legend_at_bottom": True, "legend_at_bottom_columns": 3,
            "truncate_legend": -1, "truncate_label": -1, "margin": 16, **options}


def _render(chart: Any) -> str:
    chart.add_xml_filter(_without_scripts)
    svg: str = chart.render(is_unicode=True)
    return svg


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[:_LABEL_CHARS - 1] + "…"


def coverage_chart(points: Sequence[tuple[dt.date, float]], *, line: Sequence[tuple[dt.date, float]] = (),
                   slope_per_day: float | None = None, milestones: Iterable[tuple[str, dt.date, float]] = (),
                   title: str = "", series: str = "Part conforme (%)", width: int = 900, height: int = 400) -> str:
    """The compliant share (%) day by day — or another share, named by ``series`` — the projection as a dashed
    line and the milestones as dots.

    ``points``: (day, share %) in day order; ``line``: the projection's two (day, share %) ends (empty: none);
    ``slope_per_day`` lets the line be cut at :data:`HORIZON_DAYS` past the last point when its end is further;
    ``milestones``: (label, due, percent) of the targets of the same population (those due within the chart's
    period are drawn)."""
    if not points:
        # An empty date chart cannot place its value labels: a plain chart says that nothing is recorded.
        return _render(pygal.Line(**_config(title=title, width=width, height=height, show_legend=False)))
    chart = pygal.DateLine(**_config(
        title=title, width=width, height=height, range=(0, 100), y_labels=[0, 20, 40, 60, 80, 100],
        margin_right=40, show_dots=False, show_x_guides=False, x_label_rotation=0, x_value_formatter=fr_day,
        value_formatter=fr_percent))
    last = points[-1][0]
    horizon = last + dt.timedelta(days=HORIZON_DAYS)
    chart.add(series, [(d, round(s, 2)) for d, s in points])
    days = [d for d, _s in points]
    if len(line) == 2:
        projected = _clipped(line, slope_per_day, horizon)
        days += [d for d, _s in projected]
        chart.add("Projection au rythme actuel", projected, stroke_style={"width": 2, "dasharray": "8, 6"})
    # Milestones due before the first point would squeeze the curve into a corner: the targets table lists them.
    shown = [(label, due, percent) for label, due, percent in milestones if points[0][0] <= due <= horizon]
    if shown:
        chart.add("Jalons", [{"value": (due, float(percent)), "label": _short(label)}
                             for label, due, percent in sorted(shown, key=lambda m: m[1])],
                  stroke=False, show_dots=True, dots_size=6)
        days += [due for _label, due, _percent in shown]
    chart.x_labels = _day_labels(min(days), max(days))
    return _render(chart)


def _day_labels(first: dt.date, last: dt.date, count: int = 7) -> list[dt.date]:
    """At most ``count`` days spread evenly from ``first`` to ``last`` (pygal's own scale counts seconds, and
    gives the same day several times over a short period)."""
    span = (last - first).days
    if span < count:
        return [first + dt.timedelta(days=n) for n in range(span + 1)]
    return sorted({first + dt.timedelta(days=round(n * span / (count - 1))) for n in range(count)})


def _clipped(line: Sequence[tuple[dt.date, float]], slope: float | None,
             horizon: dt.date) -> list[tuple[dt.date, float]]:
    """The projection's two ends kept within 0–100 % and before ``horizon``, moved along the line (so its slope
    stays true)."""
    (start, low), (end, high) = line
    if not slope:
        return [(start, round(min(100.0, max(0.0, low)), 2)), (end, round(min(100.0, max(0.0, high)), 2))]

    def at(day: dt.date) -> float:
        return low + slope * (day - start).days

    def day_of(share: float) -> dt.date:
        return start + dt.timedelta(days=math.ceil((share - low) / slope))

    if low < 0 < slope:
        start = day_of(0.0)
    elif low > 100 and slope < 0:
        start = day_of(100.0)
    if at(end) < 0 and slope < 0:
        end = day_of(0.0)
    end = min(end, horizon)
    return [(start, round(min(100.0, max(0.0, at(start))), 2)), (end, round(min(100.0, max(0.0, at(end))), 2))]


def breakdown_chart(rows: Sequence[tuple[str, float | None]], *, title: str = "", width: int = 900) -> str:
    """One horizontal bar per breakdown value: its compliant share (%), also written after its label. ``rows``:
    (label, share %) in the order shown, top first (at most :data:`MAX_BARS`; None: nobody active there)."""
    rows = list(rows)[:MAX_BARS]
    height = 110 + 30 * max(len(rows), 3)
    chart = pygal.HorizontalBar(**_config(
        title=title, width=width, height=height, range=(0, 100), y_labels=[0, 20, 40, 60, 80, 100],
        value_formatter=fr_percent, show_legend=False, show_y_guides=True, show_x_guides=False))
    # pygal draws the first label at the bottom: reversed, the list reads top down.
    chart.x_labels = [f"{_short(label)} — {fr_percent(share) if share is not None else 'aucune identité active'}"
                      for label, share in reversed(rows)]
    chart.add("Part conforme (%)", [None if share is None else round(share, 1) for _label, share in reversed(rows)])
    return _render(chart)
