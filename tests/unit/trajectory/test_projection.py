"""The projection (hospiconnect.trajectory.projection): a least-squares line over the last weeks, on series
whose line is known by hand."""

from __future__ import annotations

import datetime as dt

import pytest

from hospiconnect.trajectory.projection import fit_line, project

TODAY = dt.date(2026, 3, 1)


def days_back(n: int) -> dt.date:
    return TODAY - dt.timedelta(days=n)


def series(values: list[float], *, step: int = 1) -> list[tuple[dt.date, float]]:
    """Points ending today, one every ``step`` days, the last value today."""
    count = len(values)
    return [(days_back((count - 1 - i) * step), v) for i, v in enumerate(values)]


def test_the_least_squares_line_of_four_points() -> None:
    # x̄ = 1.5, ȳ = 2.5, Sxx = 5, Sxy = 4: slope 0.8, intercept 2.5 − 0.8 × 1.5 = 1.3.
    intercept, slope = fit_line([(0, 1), (1, 3), (2, 2), (3, 4)])
    assert slope == pytest.approx(0.8)
    assert intercept == pytest.approx(1.3)
    with pytest.raises(ValueError):
        fit_line([(0, 1)])
    with pytest.raises(ValueError):
        fit_line([(2, 1), (2, 3)])


def test_an_exact_line_gives_its_date() -> None:
    # 40 % on the first day of the window, +0.5 point a day: 100 % is reached 120 days after the first point.
    points = series([40 + 0.5 * i for i in range(56)])
    result = project(points, today=TODAY)
    assert result.computable and result.reachable and not result.reached
    assert result.slope_per_day == pytest.approx(0.5)
    assert result.slope_per_week == pytest.approx(3.5)
    assert result.intercept == pytest.approx(40)
    assert result.reaches_on == days_back(55) + dt.timedelta(days=120)
    assert result.method_fr == "droite des moindres carrés sur les 8 dernières semaines (56 points)"
    assert result.explanation_fr == (f"Au rythme actuel (3,5 points par semaine), l'objectif de 100 % serait atteint "
                                     f"le {result.reaches_on:%d/%m/%Y}.")
    assert result.points == points
    assert result.line[0] == (days_back(55), pytest.approx(40))
    assert result.line[1] == (result.reaches_on, pytest.approx(100))


def test_the_date_is_the_first_day_at_or_above_the_target() -> None:
    # 10 % + 3 points a day: 95 % after 28.33 days, so on day 29; 100 % exactly on day 30.
    points = series([10 + 3 * i for i in range(20)])
    origin = points[0][0]
    assert project(points, target=95, today=TODAY).reaches_on == origin + dt.timedelta(days=29)
    assert project(points, target=100, today=TODAY).reaches_on == origin + dt.timedelta(days=30)


def test_only_the_window_counts() -> None:
    # A fast climb long ago and points in the future are ignored: the last 4 weeks rise by 1 point a day.
    old = [(days_back(200 - i), float(i)) for i in range(100)]
    recent = series([50 + i for i in range(28)])
    future = [(TODAY + dt.timedelta(days=3), 0.0)]
    result = project(old + recent + future, window_weeks=4, today=TODAY)
    assert result.method_fr == "droite des moindres carrés sur les 4 dernières semaines (28 points)"
    assert result.slope_per_day == pytest.approx(1)
    assert result.reaches_on == days_back(27) + dt.timedelta(days=50)
    # The window is [today − 55 days, today] for 8 weeks: a point 56 days back is out.
    edge = [(days_back(56), 0.0)] + series([50.0 + i for i in range(20)])
    assert len(project(edge, today=TODAY).points) == 20


def test_gaps_in_days_keep_the_calendar_slope() -> None:
    # One point every 3 days, +1 point a day: the slope is per calendar day, not per point.
    points = series([20 + 3 * i for i in range(18)], step=3)
    result = project(points, today=TODAY)
    assert result.method_fr.endswith("(18 points)")
    assert result.slope_per_day == pytest.approx(1)
    first = points[0][0]
    assert result.reaches_on == first + dt.timedelta(days=80)
    # Irregular gaps, same line y = 30 + 2x: the fit is still exact.
    xs = [0, 1, 5, 6, 13, 20, 21, 30]
    origin = days_back(30)
    irregular = [(origin + dt.timedelta(days=x), 30 + 2 * x) for x in xs]
    result = project(irregular, today=TODAY)
    assert result.slope_per_day == pytest.approx(2)
    assert result.reaches_on == origin + dt.timedelta(days=35)


def test_a_flat_series_is_not_reachable() -> None:
    result = project(series([62.5] * 56), today=TODAY)
    assert result.computable and not result.reachable and result.reaches_on is None
    assert result.slope_per_day == 0
    assert result.explanation_fr == ("Objectif non atteignable au rythme actuel : la part est stable sur la "
                                     "période.")


def test_a_falling_series_is_not_reachable() -> None:
    result = project(series([80 - 0.25 * i for i in range(56)]), today=TODAY)
    assert not result.reachable and result.reaches_on is None
    assert result.slope_per_day == pytest.approx(-0.25)
    assert "en baisse (-1,75 point par semaine)" in result.explanation_fr
    assert result.line[-1][0] == TODAY


def test_a_date_beyond_ten_years_is_not_reachable() -> None:
    # +0.001 point a day from 50 %: 50,000 days, about 137 years.
    result = project(series([50 + 0.001 * i for i in range(56)]), today=TODAY)
    assert result.computable and not result.reachable and result.reaches_on is None
    assert result.slope_per_day == pytest.approx(0.001)
    assert "plus de 10 ans" in result.explanation_fr
    # Just under ten years is still a date: 99 % to go at 0.028 point a day is 3,536 days.
    near = project(series([1 + 0.028 * i for i in range(56)]), today=TODAY)
    assert near.reachable and near.reaches_on is not None
    assert near.reaches_on < TODAY + dt.timedelta(days=3653)


def test_already_at_the_target() -> None:
    # Rising to 100 % three days ago and staying there: reached since that day, even though the line is slow.
    values = [90 + 0.2 * i for i in range(50)] + [100.0] * 3
    result = project(series(values), today=TODAY)
    assert result.reachable and result.reached
    assert result.reaches_on == days_back(2)
    assert result.explanation_fr == f"Objectif de 100 % atteint (depuis le {days_back(2):%d/%m/%Y} au moins)."
    # A flat 100 % is reached, not "not reachable".
    full = project(series([100.0] * 30), today=TODAY)
    assert full.reached and full.reachable and full.reaches_on == days_back(29)
    # A lower target already passed.
    assert project(series([70 + i for i in range(20)]), target=80, today=TODAY).reaches_on == days_back(9)


def test_a_crossing_before_the_last_point_is_the_next_day() -> None:
    # 0, 8, …, 96 % then 99 % on the last day: the line passes 100 % before it, the share does not.
    points = series([8.0 * i for i in range(13)] + [99.0])
    result = project(points, today=TODAY)
    assert result.intercept is not None and result.slope_per_day is not None
    assert result.intercept + result.slope_per_day * 13 > 100
    assert result.reaches_on == TODAY + dt.timedelta(days=1)


def test_fewer_than_two_weeks_is_not_computable() -> None:
    short = project(series([10 + i for i in range(13)]), today=TODAY)
    assert not short.computable and not short.reachable and short.reaches_on is None
    assert short.slope_per_day is None
    assert short.explanation_fr == ("Projection impossible : historique insuffisant (13 points sur 13 jours ; il "
                                    "faut au moins 2 semaines de relevés).")
    # Two points 13 days apart cover 14 days: computable.
    two = project([(days_back(13), 10.0), (TODAY, 23.0)], today=TODAY)
    assert two.computable and two.slope_per_day == pytest.approx(1)
    assert not project([(TODAY, 50.0)], today=TODAY).computable
    empty = project([], today=TODAY)
    assert not empty.computable and "0 point " in empty.explanation_fr
    with pytest.raises(ValueError):
        project([], window_weeks=0, today=TODAY)


def test_as_dict_is_json_ready() -> None:
    data = project(series([40 + 0.5 * i for i in range(56)]), today=TODAY).as_dict()
    assert data["reaches_on"] == (days_back(55) + dt.timedelta(days=120)).isoformat()
    assert data["points"][0] == [days_back(55).isoformat(), 40]
    assert (data["computable"], data["reachable"], data["reached"], data["target"]) == (True, True, False, 100.0)
    assert data["slope_per_week"] == pytest.approx(3.5)
