"""Seasonal phrases in every covered language, and the calendars their windows come from.

The holidays' dates are checked against published dates; each language's phrases are
held out of their window and pass inside it, at the edges of the windows, over the new
year and in every place a reader sees (subject, preheader, text, HTML).
"""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.mail.content import Document
from gateway.model import ContentReport, Facts, RuleScan
from gateway.policy.fixtures import CampaignSpec, MessageSpec, evaluate
from gateway.policy.registry import default_registry
from gateway.policy.rules.base import Context, Shared
from gateway.policy.rules.holidays import HOLIDAYS, Around, Fixed, easter, inside
from gateway.policy.rules.seasonal import DEFAULT_PHRASES, Seasonal, check, scan
from gateway.policy.rules.seasons import SEASONS
from tests.policy.factories import campaign, load, submission

DOCS = Path(__file__).resolve().parents[2] / "docs" / "policies.md"
RULE = Seasonal(id="seasonal", kind="seasonal")
REG = default_registry()


def found(text: str, where: str = "text", rule: Seasonal = RULE) -> list[str]:
    """The phrases the rule finds in `text` placed in the subject, text or HTML."""
    return [str(h.detail["phrase"]) for h in scan(rule, Document(**{where: text}), Shared())]


def held(text: str, day: date, rule: Seasonal = RULE, hour: int = 12) -> bool:
    """Tell whether the rule holds a mail with `text` sent on `day` (at `hour` UTC)."""
    hits = tuple(scan(rule, Document(text=text), Shared()))
    assert hits, f"nothing found in {text!r}"
    report = ContentReport(analysed=True, scans={rule.id: RuleScan(hits=hits)})
    ctx = Context(
        campaign=campaign(1000),
        submission=replace(submission(["reader@example.org"]), report=report),
        facts=Facts(),
        now=datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp(),
    )
    return bool(check(rule, ctx))


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


# --- coverage -----------------------------------------------------------------------------

REQUIRED = ("en", "es", "de", "fr", "pt", "it", "nl", "ja")


def seasons_of(language: str) -> set[str]:
    return {season for season, languages, _, _ in SEASONS if language in languages.split()}


@pytest.mark.parametrize("language", REQUIRED)
def test_each_language_has_christmas_new_year_easter_black_friday_and_halloween(language):
    wanted = {"Christmas", "New Year", "Easter", "Black Friday", "Cyber Monday", "Halloween"}
    assert wanted <= seasons_of(language)


@pytest.mark.parametrize("language", ["en", "de", "fr", "pt", "it", "nl", "ja"])
def test_mothers_and_fathers_day_are_covered_where_their_dates_are_computable(language):
    assert {"Mother's Day", "Father's Day"} <= seasons_of(language)


def test_spanish_has_no_mothers_or_fathers_day_for_its_countries_dates_differ():
    assert not {"Mother's Day", "Father's Day"} & seasons_of("es")


def test_no_default_phrase_is_listed_twice():
    phrases = [p.phrase for p in DEFAULT_PHRASES]
    assert len(phrases) == len(set(phrases))


def reference() -> str:
    text = DOCS.read_text(encoding="utf-8")
    return text[text.index("### `seasonal`") : text.index("### `language`")]


def test_every_default_phrase_is_in_the_policy_reference():
    assert [p.phrase for p in DEFAULT_PHRASES if p.phrase not in reference()] == []


def test_every_holiday_is_in_the_policy_reference():
    assert [name for name in HOLIDAYS if f"`{name}`" not in reference()] == []


# --- finding the phrases ------------------------------------------------------------------


def no_accents(text: str) -> str:
    bare = unicodedata.normalize("NFD", text)
    return "".join(c for c in bare if not unicodedata.combining(c))


@pytest.mark.parametrize("phrase", DEFAULT_PHRASES, ids=lambda p: p.phrase)
def test_every_default_phrase_is_found_in_any_case_and_without_accents(phrase):
    text = phrase.phrase
    for written in {text, text.upper(), text.lower(), no_accents(text), no_accents(text).upper()}:
        assert phrase.phrase in found(f"Hello.\n{written}!\nBye."), written


@pytest.mark.parametrize("phrase", DEFAULT_PHRASES, ids=lambda p: p.phrase)
def test_every_default_phrase_is_held_on_some_day_of_the_year(phrase):
    year = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
    assert not all(inside(phrase.windows, day) for day in year)
    assert any(inside(phrase.windows, day) for day in year)


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("Happy Valentines Day!", "Happy Valentine's Day"),
        ("Happy Valentine’s Day!", "Happy Valentine's Day"),
        ("Seasons Greetings", "Season's Greetings"),
        ("Happy Mothers' Day", "Happy Mother's Day"),
        ("Happy St Patrick's Day", "Happy St. Patrick's Day"),
        ("Joyeuse Saint Valentin", "Joyeuse Saint-Valentin"),
        ("Black-Friday-Deals", "Black Friday"),
        ("Frohe\n   Weihnachten", "Frohe Weihnachten"),
        ("FROHE WEIHNACHTEN", "Frohe Weihnachten"),
        ("Fröhliche Weihnachten", "Fröhliche Weihnachten"),
        ("Froehliche Weihnachten", "Fröhliche Weihnachten"),
        ("Glaedelig jul", "Glædelig jul"),
        ("Wesolych Swiat Bozego Narodzenia", "Wesołych Świąt Bożego Narodzenia"),
        ("Joyeux Noe\u0308l", "Joyeux Noël"),  # decomposed diaeresis
        ("ＭＥＲＲＹ　ＣＨＲＩＳＴＭＡＳ", "Merry Christmas"),  # full-width
        ("ﾒﾘｰｸﾘｽﾏｽ", "メリークリスマス"),  # half-width katakana
        ("Merry Xmas", "Merry X'mas"),
        ("新年明けましておめでとうございます。", "明けましておめでとう"),
        ("ただいま新春セールを開催中です", "新春セール"),
        ("Bonnes fêtes de fin d’année", "Bonnes fêtes de fin d'année"),
    ],
)
def test_phrases_match_their_usual_spellings(text, phrase):
    assert phrase in found(text)


@pytest.mark.parametrize(
    "text",
    [
        "Happy Easterbrook Farm",  # a longer word is not the phrase
        "新年快樂",  # also the Lunar New Year's greeting
        "恭喜發財",
        "Ramadan Kareem",
        "Eid Mubarak",
        "Happy Diwali",
        "Happy Hanukkah",
        "Happy Lunar New Year",
        "Father's Day gift cards",  # only the greeting is seasonal, not a mention
        "è stato un buon anno per noi",
        "¡Felices fiestas patrias!",
    ],
)
def test_feasts_that_cannot_be_dated_and_ordinary_words_are_not_phrases(text):
    assert found(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "¡Feliz Año Nuevo Chino!",
        "Próspero año nuevo lunar",
        "Feliz Ano Novo Chinês",
        "Bonne année chinoise !",
        "Felice anno nuovo cinese",
        "Boas festas juninas!",
    ],
)
def test_words_after_a_phrase_that_make_it_another_feast_keep_it_from_matching(text):
    assert found(text) == []


# --- windows, language by language --------------------------------------------------------

# (text as written in a mail, a day it passes, a day it is held): edges of the windows.
CASES = [
    # en
    ("Merry Christmas!", date(2026, 11, 15), date(2026, 11, 14)),
    ("Merry Christmas!", date(2026, 12, 31), date(2027, 1, 1)),
    ("Happy New Year!", date(2027, 1, 15), date(2027, 1, 16)),
    ("Merry Christmas and a Happy New Year", date(2026, 12, 1), date(2027, 2, 2)),
    ("Happy Holidays", date(2027, 1, 6), date(2027, 1, 7)),
    ("Happy Easter", date(2026, 3, 1), date(2026, 2, 28)),
    ("Happy Easter", date(2026, 4, 6), date(2026, 4, 7)),
    ("Happy Easter", date(2027, 3, 29), date(2027, 4, 5)),
    ("Happy Thanksgiving", date(2026, 11, 29), date(2026, 11, 30)),
    ("Happy Thanksgiving", date(2026, 10, 12), date(2026, 10, 14)),  # Canada
    ("Happy Thanksgiving", date(2026, 11, 1), date(2027, 4, 14)),
    ("Black Friday deals", date(2026, 11, 24), date(2026, 12, 3)),
    ("Cyber Monday", date(2026, 11, 30), date(2026, 12, 6)),
    ("Happy Mother's Day", date(2026, 3, 15), date(2026, 3, 17)),  # UK, then US
    ("Happy Mother's Day", date(2026, 5, 11), date(2026, 5, 12)),
    ("Happy Father's Day", date(2026, 6, 8), date(2026, 6, 23)),
    ("Happy Father's Day", date(2026, 9, 6), date(2026, 10, 1)),  # Australia
    ("Happy Valentine's Day", date(2026, 2, 14), date(2026, 9, 15)),
    ("Happy Halloween", date(2026, 10, 31), date(2026, 11, 2)),
    ("Happy 4th of July", date(2026, 7, 4), date(2026, 7, 6)),
    ("Happy St. Patrick's Day", date(2026, 3, 17), date(2026, 3, 19)),
    # es
    ("¡Feliz Navidad!", date(2027, 1, 6), date(2027, 1, 7)),
    ("¡Feliz Navidad y próspero Año Nuevo!", date(2026, 12, 19), date(2027, 3, 9)),
    ("Feliz año nuevo", date(2027, 1, 2), date(2027, 2, 2)),
    ("Feliz Ano Nuevo", date(2027, 1, 2), date(2027, 2, 2)),
    ("¡Feliz Día de Reyes!", date(2027, 1, 6), date(2027, 1, 8)),
    ("Feliz Semana Santa", date(2026, 3, 30), date(2026, 5, 1)),
    ("Felices Pascuas", date(2026, 4, 5), date(2026, 8, 1)),  # Easter or Christmas
    ("Felices Pascuas", date(2026, 12, 24), date(2026, 8, 1)),
    ("Feliz Día de Acción de Gracias", date(2026, 11, 26), date(2026, 10, 12)),
    ("Feliz Halloween", date(2026, 10, 31), date(2026, 3, 1)),
    # de
    ("Frohe Weihnachten", date(2026, 12, 24), date(2026, 7, 15)),
    ("Frohes neues Jahr!", date(2027, 1, 2), date(2026, 7, 15)),
    ("Einen guten Rutsch!", date(2026, 12, 31), date(2027, 1, 2)),
    ("Frohe Ostern", date(2027, 2, 21), date(2027, 2, 20)),
    ("Frohe Pfingsten", date(2026, 5, 25), date(2026, 5, 26)),
    ("Alles Gute zum Muttertag", date(2026, 5, 10), date(2026, 5, 12)),
    ("Schönen Vatertag", date(2026, 5, 14), date(2026, 6, 16)),  # Ascension; Austria 14 June
    ("Schönen Nikolaustag", date(2026, 12, 6), date(2026, 12, 7)),
    # fr
    ("Joyeux Noël", date(2026, 12, 17), date(2027, 5, 12)),
    ("Joyeux Noel", date(2026, 12, 17), date(2027, 5, 12)),
    ("Bonne année 2027 !", date(2027, 1, 31), date(2027, 2, 1)),
    ("Joyeuses Pâques", date(2026, 4, 5), date(2026, 10, 5)),
    ("Joyeuses Paques", date(2026, 4, 5), date(2026, 10, 5)),
    ("Bonne fête des mères", date(2020, 6, 8), date(2020, 6, 9)),  # moved for Pentecost
    ("Bonne fête des pères", date(2026, 6, 21), date(2026, 6, 23)),
    ("Joyeuse Action de grâce", date(2026, 10, 12), date(2026, 11, 26)),  # Canada's only
    # pt
    ("Feliz Natal e Boas Festas!", date(2026, 12, 20), date(2026, 6, 3)),
    ("Feliz Ano Novo", date(2027, 1, 1), date(2027, 1, 16)),
    ("Feliz Páscoa", date(2026, 4, 5), date(2026, 4, 7)),
    ("Feliz Pascoa", date(2026, 4, 5), date(2026, 4, 7)),
    ("Feliz Dia das Mães", date(2026, 5, 3), date(2026, 5, 12)),  # Portugal, Brazil
    ("Feliz Dia dos Pais", date(2026, 8, 9), date(2026, 8, 11)),  # Brazil
    ("Feliz Dia do Pai", date(2026, 3, 19), date(2026, 3, 21)),  # Portugal
    ("Feliz Dia dos Namorados", date(2026, 6, 12), date(2026, 6, 14)),  # Brazil
    ("Feliz Dia dos Namorados", date(2026, 2, 14), date(2026, 2, 16)),  # Portugal
    # it
    ("Buon Natale", date(2026, 12, 24), date(2026, 10, 13)),
    ("Buona Pasqua", date(2026, 4, 1), date(2026, 10, 13)),
    ("Buona Pasquetta", date(2026, 4, 6), date(2026, 4, 7)),
    ("Buon Capodanno", date(2026, 12, 31), date(2027, 1, 16)),
    ("Buona Befana", date(2027, 1, 6), date(2027, 1, 8)),
    ("Buona festa del papà", date(2026, 3, 19), date(2026, 3, 21)),
    ("Buona festa del papa", date(2026, 3, 19), date(2026, 3, 21)),
    ("Buona festa della mamma", date(2026, 5, 10), date(2026, 5, 12)),
    ("Buon Ferragosto", date(2026, 8, 15), date(2026, 8, 17)),
    # nl
    ("Prettige kerstdagen en een gelukkig nieuwjaar!", date(2026, 12, 20), date(2026, 8, 4)),
    ("Gelukkig Nieuwjaar", date(2027, 1, 15), date(2027, 1, 16)),
    ("Fijne feestdagen", date(2027, 1, 6), date(2027, 1, 7)),
    ("Fijne pakjesavond", date(2026, 12, 5), date(2026, 12, 7)),
    ("Vrolijk Pasen", date(2026, 4, 6), date(2026, 4, 7)),
    ("Fijne Koningsdag", date(2025, 4, 26), date(2025, 4, 28)),
    ("Fijne Moederdag", date(2026, 5, 10), date(2026, 6, 1)),
    ("Fijne Moederdag", date(2026, 8, 15), date(2026, 8, 17)),  # Antwerp
    ("Fijne Vaderdag", date(2026, 6, 14), date(2026, 6, 23)),  # Belgium, Netherlands
    # ja: said from 1 January only
    ("明けましておめでとうございます", date(2027, 1, 1), date(2026, 12, 25)),
    ("明けましておめでとうございます", date(2027, 1, 15), date(2027, 1, 16)),
    ("あけましておめでとう", date(2026, 12, 26), date(2026, 8, 20)),
    ("新春セール開催中", date(2027, 1, 31), date(2027, 2, 1)),
    ("初売りのお知らせ", date(2027, 1, 2), date(2027, 1, 16)),
    ("メリークリスマス", date(2026, 12, 24), date(2027, 1, 1)),
    ("よいお年をお迎えください", date(2026, 12, 28), date(2027, 1, 2)),
    ("ブラックフライデー開催", date(2026, 11, 27), date(2027, 5, 1)),
    ("母の日ギフト", date(2026, 4, 1), date(2026, 5, 12)),
    ("父の日ギフト", date(2026, 6, 21), date(2026, 6, 23)),
    # others
    ("God jul og godt nytt år!", date(2026, 12, 10), date(2027, 3, 1)),
    ("Glad midsommar!", date(2027, 6, 21), date(2027, 6, 27)),
    ("Glad påsk", date(2027, 3, 28), date(2027, 4, 5)),
    ("Hyvää joulua", date(2026, 12, 24), date(2026, 6, 1)),
    ("Wesołych Świąt!", date(2026, 4, 5), date(2026, 8, 1)),  # Easter or Christmas
    ("Wesołych Świąt!", date(2026, 12, 24), date(2026, 8, 1)),
    ("聖誕快樂", date(2026, 12, 24), date(2026, 7, 1)),
]


@pytest.mark.parametrize(("text", "passes", "holds"), CASES, ids=str)
def test_a_phrase_passes_inside_its_window_and_is_held_outside(text, passes, holds):
    assert not held(text, passes)
    assert held(text, holds)


def test_one_phrase_of_a_greeting_out_of_season_holds_though_the_other_is_in():
    """April: Easter for "Wesołych Świąt", but not for "... Bożego Narodzenia" (Christmas)."""
    assert held("Wesołych Świąt Bożego Narodzenia!", date(2026, 4, 5))


def test_the_window_is_read_in_the_rules_time_zone():
    auckland = Seasonal(id="seasonal", kind="seasonal", timezone="Pacific/Auckland")
    # 12:00 UTC on 15 January is already the 16th in Auckland.
    assert not held("Happy New Year", date(2027, 1, 15))
    assert held("Happy New Year", date(2027, 1, 15), rule=auckland)


# --- whole messages -----------------------------------------------------------------------

PREHEADER = '<div style="display:none;max-height:0;overflow:hidden">{}</div>'


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seasonal")
    (folder / "content.yaml").write_text("version: 1\nrules:\n  - {id: seasonal, kind: seasonal}\n")
    return load(folder)


@pytest.mark.parametrize(
    "message",
    [
        MessageSpec(subject="Buona Pasqua da Shop", text="Ciao!"),
        MessageSpec(subject="Neu", text="Hallo", html=PREHEADER.format("Frohes neues Jahr!")),
        MessageSpec(subject="Zomer", text="Prettige kerstdagen!\nHet Shop-team"),
        MessageSpec(subject="Junho", text="", html="<h1>Feliz Natal e Boas Festas!</h1>"),
        MessageSpec(subject="セール", text="明けましておめでとうございます。"),
    ],
    ids=["subject", "preheader", "text", "html", "ja-text"],
)
def test_a_phrase_anywhere_a_reader_sees_holds_a_mail_out_of_season(policies, message):
    def findings(day: date) -> set[tuple[str, str]]:
        spec = CampaignSpec(date=day)
        return {f.signature for f in evaluate(policies, message.content(), spec, registry=REG)}

    assert findings(date(2026, 9, 1)) == {("seasonal", "out_of_season")}


def test_the_finding_names_the_season_and_this_years_window(policies):
    content = MessageSpec(subject="Buona Pasqua da tutto il team", text="Ciao").content()
    [finding] = evaluate(policies, content, CampaignSpec(date=date(2026, 10, 13)), registry=REG)
    assert finding.message == (
        "'Buona Pasqua' in the subject belongs to Easter, 2027-02-21..2027-03-29, "
        "but today is 2026-10-13 (UTC)"
    )
    [entry] = finding.evidence["found"]
    assert entry["windows"] == "easter -35..+1"
    assert entry["window"] == "2027-02-21..2027-03-29"


# --- operators' phrases -------------------------------------------------------------------


def test_an_operators_phrase_may_follow_a_holiday_computed_each_year():
    rule = Seasonal.model_validate(
        {
            "id": "seasonal",
            "kind": "seasonal",
            "phrases": [{"phrase": "Oster-Rabatt", "around": "easter", "before": 14, "after": 0}],
        }
    )
    assert not held("Unser Oster-Rabatt", date(2026, 3, 22), rule=rule)
    assert held("Unser Oster-Rabatt", date(2026, 3, 21), rule=rule)
    assert held("Unser Oster-Rabatt", date(2026, 4, 6), rule=rule)
    assert found("Merry Christmas", rule=rule) == []  # `phrases` replaces the defaults


@pytest.mark.parametrize(
    "spec",
    [
        {"phrase": "Sale", "from": "12-01", "until": "12-24", "around": "easter"},
        {"phrase": "Sale"},
        {"phrase": "Sale", "from": "12-01"},
        {"phrase": "Sale", "around": "diwali"},
        {"phrase": "Sale", "around": "easter", "before": -1},
    ],
)
def test_an_operators_phrase_needs_exactly_one_window_of_a_known_holiday(spec):
    with pytest.raises(ValidationError):
        Seasonal.model_validate({"id": "s", "kind": "seasonal", "extra_phrases": [spec]})
