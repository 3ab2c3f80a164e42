"""The default seasonal phrases, by season and language, and the windows they may be sent in.

Owns the data of the `seasonal` rule's defaults (docs/policies.md, `seasonal`, shows it as
a table): which greetings belong to which season in each covered language, and each
season's windows, fixed days of the year or days around a holiday computed per year
(`holidays.py`). Languages are primary subtags as the language rule reports them.

Left out on purpose, because their dates cannot be computed here or the words are shared
with another feast: Ramadan and Eid, Diwali, Hanukkah, Rosh Hashanah, the Lunar New Year
(and New Year wishes in Han characters alone, "新年快樂", which are its greetings too),
Orthodox Easter; Mother's and Father's Day in Spanish (every country has its own date);
phrases that are also everyday words ("buon anno", "felices fiestas", "meilleurs vœux").
"""

from __future__ import annotations

from gateway.policy.rules.holidays import Around, Fixed, Window

# New Year wishes open with Christmas's: "Merry Christmas and a Happy New Year" is one
# greeting, and it is sent from mid-November.
CHRISTMAS = (Fixed((11, 15), (12, 31)),)
CHRISTMAS_TO_EPIPHANY = (Fixed((11, 15), (1, 6)),)
NEW_YEAR = (Fixed((11, 15), (1, 15)),)
NEW_YEAR_ALL_JANUARY = (Fixed((11, 15), (1, 31)),)  # French wishes run all January
AKEMASHITE = (Fixed((12, 26), (1, 15)),)  # said from 1 January only; a few days to schedule
NEW_YEARS_EVE = (Fixed((12, 1), (1, 1)),)
EPIPHANY = (Fixed((12, 15), (1, 7)),)
ST_NICHOLAS = (Fixed((11, 1), (12, 6)),)  # Sinterklaas arrives mid-November
BOXING_DAY = (Fixed((12, 1), (1, 7)),)
EASTER = (Around("easter", 35, 1),)  # five weeks before, to Easter Monday
EASTER_OR_CHRISTMAS = EASTER + CHRISTMAS_TO_EPIPHANY
PENTECOST = (Around("pentecost", 21, 1),)
VALENTINE = (Fixed((2, 1), (2, 15)),)
HALLOWEEN = (Fixed((10, 1), (11, 1)),)
US_THANKSGIVING = (Around("us-thanksgiving", 25, 3),)  # to the end of the long weekend
CA_THANKSGIVING = (Around("ca-thanksgiving", 21, 1),)
BLACK_FRIDAY = (Fixed((10, 25), (12, 2)),)  # every year's date (23-29 Nov) with its lead
CYBER_MONDAY = (Fixed((11, 1), (12, 5)),)  # 26 Nov - 2 Dec
GIFTS = 42  # days of lead of a Mother's or Father's Day campaign
ST_JOSEPH = (Fixed((2, 5), (3, 20)),)  # Father's Day on 19 March, with the same lead


def gift(*holidays: str) -> tuple[Window, ...]:
    """Windows of a gift day in each of its countries: six weeks before, to the day after."""
    return tuple(Around(h, GIFTS, 1) for h in holidays)


Row = tuple[str, str, tuple[Window, ...], tuple[str, ...]]  # season, languages, windows, phrases
SEASONS: tuple[Row, ...] = (
    ("Christmas", "en", CHRISTMAS, ("Merry Christmas", "Happy Christmas", "Merry X'mas")),
    ("Christmas", "es", CHRISTMAS_TO_EPIPHANY, ("Feliz Navidad", "Felices Navidades")),
    ("Christmas", "es", CHRISTMAS_TO_EPIPHANY, ("Feliz Nochebuena",)),
    ("Christmas", "de", CHRISTMAS, ("Frohe Weihnachten", "Fröhliche Weihnachten")),
    ("Christmas", "de", CHRISTMAS, ("Frohe Weihnacht", "Schöne Weihnachten")),
    ("Christmas", "de", CHRISTMAS, ("Frohes Weihnachtsfest",)),
    ("Christmas", "fr", CHRISTMAS, ("Joyeux Noël",)),
    ("Christmas", "pt", CHRISTMAS, ("Feliz Natal",)),
    ("Christmas", "it", CHRISTMAS, ("Buon Natale", "Felice Natale")),
    ("Christmas", "nl", CHRISTMAS, ("Prettige kerstdagen", "Fijne kerstdagen", "Fijne kerst")),
    ("Christmas", "nl", CHRISTMAS, ("Vrolijk kerstfeest", "Zalig kerstfeest", "Vrolijke kerst")),
    ("Christmas", "nl", CHRISTMAS, ("Gezellige kerstdagen",)),
    ("Christmas", "ja", CHRISTMAS, ("メリークリスマス", "メリー・クリスマス")),
    ("Christmas", "zh", CHRISTMAS, ("聖誕快樂", "圣诞快乐", "聖誕節快樂", "圣诞节快乐")),
    ("Christmas", "sv nb da", CHRISTMAS, ("God jul",)),
    ("Christmas", "nb da", CHRISTMAS, ("Gledelig jul", "Glædelig jul")),
    ("Christmas", "fi", CHRISTMAS, ("Hyvää joulua",)),
    ("Christmas", "pl", CHRISTMAS, ("Wesołych Świąt Bożego Narodzenia",)),
    ("the holidays", "en", CHRISTMAS_TO_EPIPHANY, ("Happy Holidays", "Season's Greetings")),
    ("the holidays", "fr", CHRISTMAS_TO_EPIPHANY, ("Bonnes fêtes de fin d'année",)),
    ("the holidays", "fr", CHRISTMAS_TO_EPIPHANY, ("Joyeuses fêtes de fin d'année",)),
    ("the holidays", "pt", CHRISTMAS_TO_EPIPHANY, ("Boas Festas",)),
    ("the holidays", "nl", CHRISTMAS_TO_EPIPHANY, ("Fijne feestdagen", "Prettige feestdagen")),
    ("Boxing Day", "en", BOXING_DAY, ("Boxing Day",)),
    ("St Nicholas", "nl", ST_NICHOLAS, ("Fijne Sinterklaas", "Prettige Sinterklaas")),
    ("St Nicholas", "nl", ST_NICHOLAS, ("Fijne Sinterklaasavond", "Fijne pakjesavond")),
    ("St Nicholas", "de", ST_NICHOLAS, ("Frohen Nikolaus", "Schönen Nikolaus")),
    ("St Nicholas", "de", ST_NICHOLAS, ("Schönen Nikolaustag",)),
    ("New Year", "en", NEW_YEAR, ("Happy New Year",)),
    ("New Year", "es", NEW_YEAR, ("Feliz Año Nuevo", "Próspero Año Nuevo")),
    ("New Year", "de", NEW_YEAR, ("Frohes neues Jahr", "Gutes neues Jahr")),
    ("New Year", "de", NEW_YEAR, ("Gesundes neues Jahr", "Glückliches neues Jahr")),
    ("New Year", "de", NEW_YEAR, ("Prosit Neujahr", "Prost Neujahr")),
    ("New Year", "fr", NEW_YEAR_ALL_JANUARY, ("Bonne année", "Bonne et heureuse année")),
    ("New Year", "pt", NEW_YEAR, ("Feliz Ano Novo", "Próspero Ano Novo")),
    ("New Year", "it", NEW_YEAR, ("Felice anno nuovo", "Buon anno nuovo", "Buon Capodanno")),
    ("New Year", "nl", NEW_YEAR, ("Gelukkig nieuwjaar", "Gelukkig nieuw jaar")),
    ("New Year", "nl", NEW_YEAR, ("Zalig nieuwjaar",)),
    ("New Year", "ja", AKEMASHITE, ("明けましておめでとう", "あけましておめでとう")),
    ("New Year", "ja", AKEMASHITE, ("新年おめでとう", "あけおめ")),
    ("New Year", "ja", (Fixed((12, 1), (1, 15)),), ("初売り",)),
    ("New Year", "ja", (Fixed((12, 1), (1, 31)),), ("新春セール",)),
    ("New Year", "sv", NEW_YEAR, ("Gott nytt år",)),
    ("New Year", "nb", NEW_YEAR, ("Godt nytt år", "Godt nyttår")),
    ("New Year", "da", NEW_YEAR, ("Godt nytår",)),
    ("New Year", "fi", NEW_YEAR, ("Hyvää uutta vuotta", "Onnellista uutta vuotta")),
    ("New Year", "pl", NEW_YEAR, ("Szczęśliwego Nowego Roku",)),
    ("New Year's Eve", "de", NEW_YEARS_EVE, ("Guten Rutsch",)),
    ("New Year's Eve", "ja", NEW_YEARS_EVE, ("よいお年を", "良いお年を")),
    ("Epiphany", "es", EPIPHANY, ("Feliz Día de Reyes", "Felices Reyes")),
    ("Epiphany", "it", EPIPHANY, ("Buona Befana", "Buona Epifania")),
    ("Easter", "en", EASTER, ("Happy Easter",)),
    ("Easter", "es", EASTER, ("Feliz Semana Santa",)),
    ("Easter", "de", EASTER, ("Frohe Ostern", "Frohes Osterfest", "Schöne Ostern")),
    ("Easter", "de", EASTER, ("Fröhliche Ostern",)),
    ("Easter", "fr", EASTER, ("Joyeuses Pâques", "Bonnes Pâques")),
    ("Easter", "pt", EASTER, ("Feliz Páscoa", "Boa Páscoa")),
    ("Easter", "it", EASTER, ("Buona Pasqua", "Felice Pasqua", "Buona Pasquetta")),
    ("Easter", "nl", EASTER, ("Vrolijk Pasen", "Fijne Pasen", "Zalig Pasen")),
    ("Easter", "nl", EASTER, ("Fijne paasdagen", "Prettige paasdagen")),
    ("Easter", "ja", EASTER, ("ハッピーイースター",)),
    ("Easter", "sv", EASTER, ("Glad påsk",)),
    ("Easter", "nb da", EASTER, ("God påske", "Glædelig påske")),
    ("Easter", "fi", EASTER, ("Hyvää pääsiäistä",)),
    ("Easter", "pl", EASTER, ("Wesołego Alleluja", "Wesołych Świąt Wielkanocnych")),
    # One greeting for two feasts: Easter, and Christmas (Spain's and Chile's "Pascua").
    ("Easter or Christmas", "es", EASTER_OR_CHRISTMAS, ("Feliz Pascua", "Felices Pascuas")),
    ("Easter or Christmas", "de", EASTER_OR_CHRISTMAS, ("Frohes Fest",)),
    ("Easter or Christmas", "fr", EASTER_OR_CHRISTMAS, ("Joyeuses fêtes",)),
    ("Easter or Christmas", "pl", EASTER_OR_CHRISTMAS, ("Wesołych Świąt",)),
    ("Pentecost", "de", PENTECOST, ("Frohe Pfingsten", "Schöne Pfingsten")),
    ("Pentecost", "nl", PENTECOST, ("Fijne Pinksteren",)),
    ("Valentine's Day", "en", VALENTINE, ("Happy Valentine's Day",)),
    ("Valentine's Day", "es", VALENTINE, ("Feliz San Valentín", "Feliz Día de San Valentín")),
    ("Valentine's Day", "de", VALENTINE, ("Schönen Valentinstag",)),
    ("Valentine's Day", "fr", VALENTINE, ("Joyeuse Saint-Valentin", "Bonne Saint-Valentin")),
    ("Valentine's Day", "it", VALENTINE, ("Buon San Valentino",)),
    ("Valentine's Day", "nl", VALENTINE, ("Fijne Valentijnsdag",)),
    ("Valentine's Day", "ja", (Fixed((1, 10), (2, 14)),), ("ハッピーバレンタイン",)),
    # Brazil's is 12 June, Portugal's 14 February.
    ("Valentine's Day", "pt", (*VALENTINE, Fixed((5, 15), (6, 13))), ("Feliz Dia dos Namorados",)),
    # UK and Ireland: Mothering Sunday; the US, Canada, Australia: second Sunday of May.
    ("Mother's Day", "en", gift("mothering-sunday", "2nd-sunday-may"), ("Happy Mother's Day",)),
    ("Mother's Day", "en", gift("mothering-sunday"), ("Happy Mothering Sunday",)),
    ("Mother's Day", "de", gift("2nd-sunday-may"), ("Alles Gute zum Muttertag",)),
    ("Mother's Day", "de", gift("2nd-sunday-may"), ("Schönen Muttertag",)),
    # France; Belgium, Switzerland and Canada: second Sunday of May.
    ("Mother's Day", "fr", gift("fete-des-meres", "2nd-sunday-may"), ("Bonne fête des mères",)),
    # Portugal: first Sunday of May; Brazil: second.
    ("Mother's Day", "pt", gift("1st-sunday-may", "2nd-sunday-may"), ("Feliz Dia das Mães",)),
    ("Mother's Day", "pt", gift("1st-sunday-may", "2nd-sunday-may"), ("Feliz Dia da Mãe",)),
    ("Mother's Day", "it", gift("2nd-sunday-may"), ("Buona festa della mamma",)),
    # Antwerp keeps Mother's Day on 15 August.
    ("Mother's Day", "nl", (*gift("2nd-sunday-may"), Fixed((7, 4), (8, 16))), ("Fijne Moederdag",)),
    ("Mother's Day", "ja", gift("2nd-sunday-may"), ("母の日ギフト",)),
    # Most countries: third Sunday of June; Australia, New Zealand: first of September.
    (
        "Father's Day",
        "en",
        gift("3rd-sunday-june", "1st-sunday-september"),
        ("Happy Father's Day",),
    ),
    # Germany: Ascension Day; Austria: second Sunday of June; Switzerland: first.
    (
        "Father's Day",
        "de",
        gift("ascension", "2nd-sunday-june", "1st-sunday-june"),
        ("Schönen Vatertag",),
    ),
    (
        "Father's Day",
        "de",
        gift("ascension", "2nd-sunday-june", "1st-sunday-june"),
        ("Alles Gute zum Vatertag",),
    ),
    # France, Switzerland, Canada, the Netherlands: third Sunday of June; Belgium: second.
    ("Father's Day", "fr", gift("3rd-sunday-june", "2nd-sunday-june"), ("Bonne fête des pères",)),
    ("Father's Day", "nl", gift("3rd-sunday-june", "2nd-sunday-june"), ("Fijne Vaderdag",)),
    # Italy and Portugal: 19 March; Brazil: second Sunday of August.
    ("Father's Day", "it", ST_JOSEPH, ("Buona festa del papà",)),
    ("Father's Day", "pt", (*ST_JOSEPH, *gift("2nd-sunday-august")), ("Feliz Dia dos Pais",)),
    ("Father's Day", "pt", (*ST_JOSEPH, *gift("2nd-sunday-august")), ("Feliz Dia do Pai",)),
    ("Father's Day", "ja", gift("3rd-sunday-june"), ("父の日ギフト",)),
    ("Thanksgiving", "en", US_THANKSGIVING + CA_THANKSGIVING, ("Happy Thanksgiving",)),
    ("Thanksgiving", "es", US_THANKSGIVING, ("Feliz Día de Acción de Gracias",)),
    (
        "Thanksgiving",
        "fr",
        CA_THANKSGIVING,
        ("Joyeuse Action de grâce", "Joyeuse Action de grâces"),
    ),
    ("Black Friday", "en es de fr pt it nl", BLACK_FRIDAY, ("Black Friday", "Black Week")),
    ("Black Friday", "ja", BLACK_FRIDAY, ("ブラックフライデー",)),
    ("Cyber Monday", "en es de fr pt it nl", CYBER_MONDAY, ("Cyber Monday",)),
    ("Cyber Monday", "ja", CYBER_MONDAY, ("サイバーマンデー",)),
    ("Halloween", "en de", HALLOWEEN, ("Happy Halloween",)),
    ("Halloween", "es pt", HALLOWEEN, ("Feliz Halloween",)),
    ("Halloween", "pt", HALLOWEEN, ("Feliz Dia das Bruxas",)),
    ("Halloween", "fr", HALLOWEEN, ("Joyeux Halloween",)),
    ("Halloween", "it", HALLOWEEN, ("Buon Halloween",)),
    ("Halloween", "nl", HALLOWEEN, ("Fijne Halloween",)),
    ("Halloween", "ja", HALLOWEEN, ("ハッピーハロウィン", "ハッピーハロウィーン")),
    ("Día de Muertos", "es", (Fixed((10, 15), (11, 3)),), ("Feliz Día de Muertos",)),
    ("St Patrick's Day", "en", (Fixed((3, 1), (3, 18)),), ("Happy St. Patrick's Day",)),
    ("St Patrick's Day", "en", (Fixed((3, 1), (3, 18)),), ("Happy Saint Patrick's Day",)),
    ("Independence Day", "en", (Fixed((6, 10), (7, 5)),), ("Happy 4th of July",)),
    ("Independence Day", "en", (Fixed((6, 10), (7, 5)),), ("Happy Fourth of July",)),
    ("Ferragosto", "it", (Fixed((7, 25), (8, 16)),), ("Buon Ferragosto",)),
    ("King's Day", "nl", (Around("koningsdag", 21, 1),), ("Fijne Koningsdag",)),
    ("Midsummer", "sv", (Around("midsummer-eve", 28, 1),), ("Glad midsommar",)),
    ("Midsummer", "fi", (Around("midsummer-eve", 28, 1),), ("Hyvää juhannusta",)),
)
# Words after a phrase that make it another feast's: the Lunar New Year, Festa Junina.
BUT_NOT: dict[str, tuple[str, ...]] = {
    "Feliz Año Nuevo": ("chino", "lunar"),
    "Próspero Año Nuevo": ("chino", "lunar"),
    "Feliz Ano Novo": ("chinês", "lunar"),
    "Próspero Ano Novo": ("chinês", "lunar"),
    "Bonne année": ("chinoise", "lunaire"),
    "Felice anno nuovo": ("cinese", "lunare"),
    "Buon anno nuovo": ("cinese", "lunare"),
    "Boas Festas": ("juninas",),
}
