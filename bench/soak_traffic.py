"""The soak's traffic: which campaign each next message belongs to, and its bytes.

Owns the mix and nothing about sockets or the gateway. Most mail belongs to legitimate
campaigns, the kind the default policy must pass: each declares its campaign
(X-Campaign-ID), its true size (X-Declared-Size: the number of messages it will get, one
recipient each, never more) and its locale; recipients never repeat; the text is ordinary
prose. Eight of them are open at any time and a finished one is replaced by a new one, so
the gateway sees campaigns start and end during the whole run. Four shapes: one body for
everyone (text/plain), a body personalised per recipient (greeting and account
reference), text and HTML (multipart/alternative, quoted-printable), and German prose
declared `de`.

A small share (BAD_SHARE) goes to campaigns built to be held by one shipped rule each
(policies/default.yaml), and they keep sending for the whole run, so the gateway holds
while it is busy and keeps taking mail for held campaigns:

  blast-declared  declared at 10, sends on and on (held at its 61st recipient)
  merge-tags      "Hello {{FirstName}}," in the body
  test-markers    subject "Integration Test Email #1" to outside addresses
  language        a Spanish body declared `en`
  sent-twice      the same 40 addresses over and over (held at the first repeat, the 41st)

Pure and deterministic for a seed: no I/O, no clock except each message's Date header.
"""

from __future__ import annotations

import itertools
import random
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate

from harness import PROSE

OPEN_CAMPAIGNS = 8  # legitimate campaigns open at once
CAMPAIGN_MESSAGES = (300, 3000)  # a legitimate campaign's size: uniform in this range
BAD_SHARE = 0.05  # of all messages, split evenly among the bad campaigns
BODY_SIZES = (3_000, 5_120, 12_000)  # bytes of text per message, chosen per campaign
DOMAINS = ("bench.test", "mail.bench.test", "example.org", "customers.example.net")
# Low thresholds, so that the holds come early in the run even when the machine is slow.
BLAST_DECLARED = 10  # declared by the blast campaign: held past 60 (x 1.5 and + 50)
TWICE_LIST = 40  # addresses the sent-twice campaign cycles through

ENGLISH = (
    PROSE,
    (
        "Our warehouse in the north moved to a larger building this month, and orders placed"
        " before noon now leave the same day. The new packaging uses less plastic and fits"
        " through most letterboxes, so you will not need to collect parcels from the post"
        " office as often. Delivery times to the islands stay the same for now. "
    ),
    (
        "The community meetup drew more people than we expected, and the recordings of every"
        " talk are on our website. The most watched one explains how a small team keeps its"
        " documentation short and current. Next season we will meet in a bigger room near the"
        " station, with coffee from the bakery on the corner. "
    ),
    (
        "Your account summary shows the invoices of the last quarter and the plan you are on."
        " Nothing changes in the price this year. If your team has grown, you can add seats"
        " from the billing page at any time, and you only pay for the days they were in use."
        " Our office is closed on public holidays, but the help centre stays open. "
    ),
)
GERMAN = (
    "Vielen Dank, dass Sie unseren monatlichen Brief lesen. In dieser Ausgabe stellen wir"
    " die neuen Berichte vor, die schnelleren Exporte für große Konten und eine einfachere"
    " Art, Kolleginnen und Kollegen in einen gemeinsamen Arbeitsbereich einzuladen. Unser"
    " Kundendienst hat in diesem Monat mehr Fragen beantwortet als je zuvor, und die"
    " häufigsten davon werden jetzt im Hilfebereich mit kurzen Videos erklärt. Wenn etwas"
    " unklar ist, antworten Sie einfach auf diese Nachricht. "
)
SPANISH = (
    "Esta semana lanzamos nuestra nueva colección de primavera. Hay camisas de lino,"
    " chaquetas ligeras y zapatillas para los días de calor, y el envío es gratuito en"
    " todos los pedidos de más de cincuenta euros. Nuestro equipo de atención responde"
    " a todas las preguntas en menos de un día, y las devoluciones son gratuitas. "
)
TOPICS = ("Product letter", "Release notes", "Account summary", "Community digest", "Shop news")
NAMES = ("Ada", "Bruno", "Chiara", "Dmitri", "Esther", "Farid", "Grace", "Hiroshi", "Ines")
HTML = (
    "<html><head><style>body {{ font-family: sans-serif; color: #222 }}"
    " .box {{ padding: 12px; border: 1px solid #ddd }}</style></head><body>"
    '<table class="box"><tr><td><h1>{title}</h1>{paragraphs}'
    '<p><a href="https://www.bench.test/letter?issue={issue}">Read it on the web</a></p>'
    "</td></tr></table></body></html>"
)
# Replaced in each message's bytes; ASCII, so no transfer encoding touches them.
TO_SLOT, ID_SLOT, NAME_SLOT, REF_SLOT = "SLOTTO", "SLOTMSGID", "SLOTNAME", "SLOTREF"


@dataclass
class Campaign:
    """One campaign of the run: its declaration, its message template and its tallies."""

    key: str
    kind: str  # a legitimate shape, or the id of the shipped rule that must hold it
    sender: str
    declared: int
    planned: int | None  # legitimate: messages it will get at most; bad: unbounded
    template: bytes
    personalised: bool = False
    sent: int = 0  # messages handed to a session
    accepted: int = 0  # ... and answered 250

    @property
    def legitimate(self) -> bool:
        return self.kind in LEGITIMATE

    @property
    def full(self) -> bool:
        return self.planned is not None and self.sent >= self.planned


LEGITIMATE = ("newsletter", "personal", "html", "german")
LEGITIMATE_WEIGHTS = (35, 30, 25, 10)
# Bad campaigns: (rule that must hold it, recipients that may go out before it holds).
BAD = (
    ("blast-declared", BLAST_DECLARED + 50),
    ("merge-tags", 0),
    ("test-markers", 0),
    ("language", 0),
    ("sent-twice", TWICE_LIST),
)


@dataclass(frozen=True)
class Job:
    """One message for a session to send."""

    campaign: Campaign
    mail_from: str
    rcpt: str
    payload: bytes  # DATA as sent: CRLF, dot-stuffed, with the final ".\r\n"


def data_payload(raw: bytes) -> bytes:
    """CRLF-ended message bytes as sent after DATA: dot-stuffed, then the final dot line."""
    stuffed = raw.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def paragraphs(pool: tuple[str, ...], size: int, rng: random.Random) -> list[str]:
    """Paragraphs drawn from `pool` until they make about `size` characters."""
    out: list[str] = []
    while sum(map(len, out)) < size:
        out.append(rng.choice(pool).strip())
    return out


@dataclass
class Traffic:
    """The stream of messages: call `next()` for each one, `accepted()` for each 250."""

    run_label: str
    seed: int = 1
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._numbers = itertools.count(1)
        self._open: list[Campaign] = []
        self.kinds: Counter[str] = Counter()
        self._bad = [self._bad_campaign(rule) for rule, _ in BAD]

    def next(self) -> Job:
        """The next message: a bad campaign's with probability BAD_SHARE, else a legitimate one."""
        if self.rng.random() < BAD_SHARE:
            campaign = self.rng.choice(self._bad)
        else:
            while len(self._open) < OPEN_CAMPAIGNS:
                self._open.append(self._legitimate_campaign())
            campaign = self.rng.choice(self._open)
        n = next(self._numbers)
        campaign.sent += 1
        if campaign.full:
            self._open.remove(campaign)
        if campaign.kind == "sent-twice":
            rcpt = f"twice{campaign.sent % TWICE_LIST}@{DOMAINS[0]}"
        else:  # unique across the run, so unique within every campaign
            rcpt = f"r{n}@{DOMAINS[n % len(DOMAINS)]}"
        payload = campaign.template.replace(TO_SLOT.encode(), rcpt.encode())
        payload = payload.replace(ID_SLOT.encode(), f"soak{n}.{self.run_label}".encode())
        if campaign.personalised:
            payload = payload.replace(NAME_SLOT.encode(), NAMES[n % len(NAMES)].encode())
            payload = payload.replace(REF_SLOT.encode(), f"{10_000 + n}".encode())
        return Job(campaign, campaign.sender, rcpt, payload)

    def accepted(self, job: Job) -> None:
        job.campaign.accepted += 1

    # --- campaigns -----------------------------------------------------------------------

    def _new(self, kind: str, declared: int, planned: int | None) -> Campaign:
        number = len(self.campaigns) + 1
        key = f"soak-{self.run_label}-{number:03d}-{kind}"
        sender = f"news@brand{number % 7}.bench.test"
        campaign = Campaign(key, kind, sender, declared, planned, template=b"")
        self.campaigns[key] = campaign
        self.kinds[kind] += 1
        return campaign

    def _legitimate_campaign(self) -> Campaign:
        kind = self.rng.choices(LEGITIMATE, LEGITIMATE_WEIGHTS)[0]
        planned = self.rng.randint(*CAMPAIGN_MESSAGES)
        size = self.rng.choice(BODY_SIZES)
        issue = len(self.campaigns) + 1
        locale = "de" if kind == "german" else "en"
        pool = (GERMAN,) if kind == "german" else ENGLISH
        text = paragraphs(pool, size, self.rng)
        subject = f"{self.rng.choice(TOPICS)}, issue {issue}"
        if kind == "german":
            subject = f"Unser Monatsbrief, Ausgabe {issue}"
        if kind == "personal":
            text = [
                f"Dear {NAME_SLOT},",
                f"Your account reference is {REF_SLOT}. Here is what changed this month.",
                *text,
            ]
        html = None
        if kind == "html":
            body = "".join(f"<p>{p}</p>" for p in text)
            html = HTML.format(title=subject, paragraphs=body, issue=issue)
        campaign = self._new(kind, planned, planned)
        campaign.personalised = kind == "personal"
        campaign.template = render(campaign, subject, locale, "\n\n".join(text), html)
        return campaign

    def _bad_campaign(self, rule: str) -> Campaign:
        text = "\n\n".join(paragraphs(ENGLISH, 5_120, self.rng))
        subject, locale, declared = "Shop news, this week", "en", 100_000
        if rule == "blast-declared":
            declared = BLAST_DECLARED
        elif rule == "merge-tags":
            text = "Hello {{FirstName}},\n\n" + text
        elif rule == "test-markers":
            subject, text = "Integration Test Email #1", "Checking the pipeline.\n\n" + text
        elif rule == "language":
            text = "\n\n".join(paragraphs((SPANISH,), 5_120, self.rng))
            subject = "Nueva colección"
        campaign = self._new(rule, declared, None)
        campaign.template = render(campaign, subject, locale, text, None)
        return campaign


def render(campaign: Campaign, subject: str, locale: str, text: str, html: str | None) -> bytes:
    """The campaign's DATA payload with the per-message slots still in it."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = f"Brand news <{campaign.sender}>"
    msg["To"] = f"<{TO_SLOT}>"
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = f"<{ID_SLOT}@bench.test>"
    msg["X-Campaign-ID"] = campaign.key
    msg["X-Declared-Size"] = str(campaign.declared)
    msg["X-Campaign-Locale"] = locale
    # Text wrapped at 76 and sent 7bit when ASCII, so the slots are never split by encoding.
    text = "\n\n".join(textwrap.fill(p, 76) for p in text.split("\n\n"))
    msg.set_content(text, cte="7bit" if text.isascii() else "quoted-printable")
    if html is not None:
        msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return data_payload(msg.as_bytes())
