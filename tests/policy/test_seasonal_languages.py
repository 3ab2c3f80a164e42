"""Seasonal phrases in every covered language, and the calendars their windows come from.

The holidays' dates are checked against published dates; each language's phrases are
held out of their window and pass inside it, at the edges of the windows, over the new
year and in every place a reader sees (subject, preheader, text, HTML).
"""

from __future__ import annotations

from datetime import date

import pytest

from gateway.policy.rules.holidays import HOLIDAYS, Around, Fixed, easter, inside

# --- the calendar -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "sunday"),
    [
        (1818, date(1818, 3, 22)),  # the earliest possible
        (1943, date(1943, 4, 25)),  # the latest possible
        (2000, date(2000, 4, 23)),
        (2008, date(2008, 3, 23)),
        (2011, date(2011, 4, 24)),
        (2019, date(2019, 4, 21)),
        (2024, date(2024, 3, 31)),
        (2025, date(2025, 4, 20)),
        (2026, date(2026, 4, 5)),
        (2027, date(2027, 3, 28)),
        (2038, date(2038, 4, 25)),
        (2285, date(2285, 3, 22)),
    ],
)
def test_easter_sunday_is_the_published_date(year, sunday):
    assert easter(year) == sunday


def test_easter_is_a_sunday_from_22_march_to_25_april_in_every_gregorian_year():
    for year in range(1583, 3000):
        day = easter(year)
        assert day.weekday() == 6
        assert date(year, 3, 22) <= day <= date(year, 4, 25)


@pytest.mark.parametrize(
    ("holiday", "year", "day"),
    [
        ("mothering-sunday", 2026, date(2026, 3, 15)),
        ("mothering-sunday", 2024, date(2024, 3, 10)),
        ("ascension", 2026, date(2026, 5, 14)),
        ("pentecost", 2026, date(2026, 5, 24)),
        ("1st-sunday-may", 2026, date(2026, 5, 3)),
        ("2nd-sunday-may", 2026, date(2026, 5, 10)),
        ("fete-des-meres", 2026, date(2026, 5, 31)),
        ("fete-des-meres", 2020, date(2020, 6, 7)),  # 31 May 2020 was Pentecost
        ("1st-sunday-june", 2026, date(2026, 6, 7)),
        ("2nd-sunday-june", 2026, date(2026, 6, 14)),
        ("3rd-sunday-june", 2026, date(2026, 6, 21)),
        ("2nd-sunday-august", 2026, date(2026, 8, 9)),
        ("1st-sunday-september", 2026, date(2026, 9, 6)),
        ("ca-thanksgiving", 2026, date(2026, 10, 12)),
        ("us-thanksgiving", 2026, date(2026, 11, 26)),
        ("us-thanksgiving", 2027, date(2027, 11, 25)),
        ("midsummer-eve", 2026, date(2026, 6, 19)),
        ("midsummer-eve", 2027, date(2027, 6, 25)),
        ("koningsdag", 2026, date(2026, 4, 27)),
        ("koningsdag", 2025, date(2025, 4, 26)),  # the 27th was a Sunday
    ],
)
def test_holidays_fall_on_their_published_dates(holiday, year, day):
    assert HOLIDAYS[holiday].date_in(year) == day


@pytest.mark.parametrize(
    ("day", "inside_it"),
    [
        (date(2026, 11, 14), False),
        (date(2026, 11, 15), True),
        (date(2026, 12, 31), True),
        (date(2027, 1, 1), True),
        (date(2027, 1, 15), True),
        (date(2027, 1, 16), False),
        (date(2027, 7, 1), False),
    ],
)
def test_a_fixed_window_wraps_over_the_new_year(day, inside_it):
    assert inside((Fixed((11, 15), (1, 15)),), day) is inside_it


def test_a_window_ending_on_29_february_ends_on_the_28th_in_other_years():
    assert Fixed((2, 1), (2, 29)).span(2027) == (date(2027, 2, 1), date(2027, 2, 28))
    assert Fixed((2, 1), (2, 29)).span(2028) == (date(2028, 2, 1), date(2028, 2, 29))


def test_a_window_around_easter_moves_with_easter_each_year():
    window = (Around("easter", 35, 1),)
    assert Around("easter", 35, 1).span(2026) == (date(2026, 3, 1), date(2026, 4, 6))
    assert inside(window, date(2026, 4, 6))
    assert not inside(window, date(2027, 4, 6))  # Easter 2027 was on 28 March
    assert inside(window, date(2027, 3, 29))
    assert not inside(window, date(2027, 3, 30))
