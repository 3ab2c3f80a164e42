"""Holidays' dates per year, and the windows of days around them that seasonal phrases own.

Owns the calendar arithmetic of the `seasonal` rule: Western Easter (the Anonymous
Gregorian algorithm), the feasts that follow it, the "n-th weekday of a month" days
(Mother's Day, Thanksgiving) and a few national rules (Koningsdag, Midsummer Eve), by name
in `HOLIDAYS`; and the two kinds of window, `Fixed` (the same days every year, possibly
over the new year) and `Around` (days before and after a holiday of that year).

Only holidays that arithmetic alone decides are here. Feasts of lunar or lunisolar
calendars (Ramadan and Eid, Diwali, the Lunar New Year, Hanukkah, Orthodox Easter) are
not: their dates depend on sightings or on tables we do not ship, and a guessed date would
hold in-season mail. Pure functions; nothing here knows about phrases or messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

MONDAY, THURSDAY, FRIDAY, SUNDAY = 0, 3, 4, 6
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def easter(year: int) -> date:
    """Return Western (Gregorian) Easter Sunday of `year`.

    The Anonymous Gregorian algorithm (Meeus, *Astronomical Algorithms*, ch. 8; also known
    as the Meeus/Jones/Butcher algorithm), exact for every Gregorian year.
    """
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    leap = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * leap) // 451
    month, day = divmod(h + leap - 7 * m + 114, 31)
    return date(year, month, day + 1)


def nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """Return the n-th `weekday` (0 Monday .. 6 Sunday) of the month; n = -1 is the last."""
    if n > 0:
        return on_or_after(date(year, month, 1), weekday) + timedelta(days=7 * (n - 1))
    last = date(year, month, _month_days(year, month))
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def on_or_after(day: date, weekday: int) -> date:
    """Return the first `weekday` on or after `day`."""
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def _month_days(year: int, month: int) -> int:
    if month == 2 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
        return 28
    return _DAYS[month - 1]


def fete_des_meres(year: int) -> date:
    """French Mother's Day: the last Sunday of May, or the first of June if that is Pentecost."""
    last = nth_weekday(year, 5, SUNDAY, -1)
    return nth_weekday(year, 6, SUNDAY, 1) if last == easter(year) + timedelta(49) else last


def koningsdag(year: int) -> date:
    """Dutch King's Day: 27 April, or the 26th when the 27th is a Sunday."""
    day = date(year, 4, 27)
    return day - timedelta(days=1) if day.weekday() == SUNDAY else day


def _after_easter(days: int) -> Callable[[int], date]:
    return lambda year: easter(year) + timedelta(days=days)


def _nth(month: int, weekday: int, n: int, plus: int = 0) -> Callable[[int], date]:
    return lambda year: nth_weekday(year, month, weekday, n) + timedelta(days=plus)


@dataclass(frozen=True, slots=True)
class Holiday:
    """A holiday whose date arithmetic decides each year."""

    name: str
    rule: str  # how its date is found, for the policy reference
    date_in: Callable[[int], date]


HOLIDAYS: dict[str, Holiday] = {
    h.name: h
    for h in (
        Holiday("easter", "Western Easter Sunday (Gregorian computus)", easter),
        Holiday("mothering-sunday", "three weeks before Easter (UK, Ireland)", _after_easter(-21)),
        Holiday("ascension", "Easter + 39 days (Vatertag in Germany)", _after_easter(39)),
        Holiday("pentecost", "Easter + 49 days", _after_easter(49)),
        Holiday("1st-sunday-may", "first Sunday of May", _nth(5, SUNDAY, 1)),
        Holiday("2nd-sunday-may", "second Sunday of May", _nth(5, SUNDAY, 2)),
        Holiday(
            "fete-des-meres",
            "last Sunday of May, or first of June when that is Pentecost (France)",
            fete_des_meres,
        ),
        Holiday("1st-sunday-june", "first Sunday of June", _nth(6, SUNDAY, 1)),
        Holiday("2nd-sunday-june", "second Sunday of June", _nth(6, SUNDAY, 2)),
        Holiday("3rd-sunday-june", "third Sunday of June", _nth(6, SUNDAY, 3)),
        Holiday("2nd-sunday-august", "second Sunday of August", _nth(8, SUNDAY, 2)),
        Holiday("1st-sunday-september", "first Sunday of September", _nth(9, SUNDAY, 1)),
        Holiday("ca-thanksgiving", "second Monday of October (Canada)", _nth(10, MONDAY, 2)),
        Holiday("us-thanksgiving", "fourth Thursday of November (US)", _nth(11, THURSDAY, 4)),
        Holiday(
            "midsummer-eve",
            "the Friday from 19 to 25 June (Sweden, Finland)",
            lambda year: on_or_after(date(year, 6, 19), FRIDAY),
        ),
        Holiday(
            "koningsdag", "27 April, or the 26th when that is a Sunday (Netherlands)", koningsdag
        ),
    )
}


def _day_of(year: int, month_day: tuple[int, int]) -> date:
    month, day = month_day
    return date(year, month, min(day, _month_days(year, month)))  # 29 Feb -> 28 Feb


@dataclass(frozen=True, slots=True)
class Fixed:
    """The same days every year, `start` to `end` (month, day), inclusive; may wrap over 31 Dec."""

    start: tuple[int, int]
    end: tuple[int, int]

    def span(self, year: int) -> tuple[date, date]:
        """Return the window that starts in `year`."""
        wraps = self.end < self.start
        return _day_of(year, self.start), _day_of(year + 1 if wraps else year, self.end)

    def describe(self) -> str:
        """`12-20..01-15`."""
        return "{:02d}-{:02d}..{:02d}-{:02d}".format(*self.start, *self.end)


@dataclass(frozen=True, slots=True)
class Around:
    """From `before` days before a holiday of `HOLIDAYS` to `after` days after it."""

    holiday: str
    before: int
    after: int

    def span(self, year: int) -> tuple[date, date]:
        """Return the window around the holiday of `year`."""
        day = HOLIDAYS[self.holiday].date_in(year)
        return day - timedelta(days=self.before), day + timedelta(days=self.after)

    def describe(self) -> str:
        """`easter -35..+1`."""
        return f"{self.holiday} -{self.before}..+{self.after}"


Window = Fixed | Around


def inside(windows: tuple[Window, ...], day: date) -> bool:
    """Tell whether `day` is in any of the windows (of its year or of the years beside it)."""
    return any(start <= day <= end for start, end in spans_near(windows, day))


def spans_near(windows: tuple[Window, ...], day: date) -> list[tuple[date, date]]:
    """Return the windows' spans that start in the year before `day`'s, its own or the next."""
    return [w.span(year) for w in windows for year in (day.year - 1, day.year, day.year + 1)]


def nearest(windows: tuple[Window, ...], day: date) -> tuple[date, date]:
    """Return the span of the windows closest to `day` (the one it is in, if any)."""

    def distance(span: tuple[date, date]) -> int:
        start, end = span
        return max((start - day).days, (day - end).days, 0)

    return min(spans_near(windows, day), key=distance)
