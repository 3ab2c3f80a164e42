"""Test-marker rule: a test send ("[TEST]", "lorem ipsum", a localhost link) going outside.

Owns the `test_markers` kind: its parameters, the default markers, its scanners (words in
the subject and body; link targets) and its check. Markers are strong signals only,
because ordinary mail says "test", "draft" and "staging" too. The check holds a marked
message unless every recipient is internal (`internal_domains`, the rule's `domains`, or a
segment of internal people). It must not resolve host names or fetch links: a link is
judged by its text alone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator

from gateway.mail.addresses import domain_of
from gateway.mail.content import Document
from gateway.model import ContentHit, Needs
from gateway.policy.rules.base import (
    Context,
    Observation,
    Rule,
    Shared,
    Strict,
    regex,
)
from gateway.policy.rules.patterns import (
    WHERE,
    Patterns,
    context,
    first_per_place,
    fragment,
    phrase_pattern,
    shown,
)

Marker = tuple[str, str, str, bool, tuple[str, ...]]  # name, regex, where, case-sensitive, hints
DEFAULT_MARKERS: tuple[Marker, ...] = (  # the most specific first
    (
        "Integration Test Email",
        r"\bintegration test (?:e-?mail|message)\b",
        "any",
        False,
        ("integration",),
    ),
    ("[TEST] or (test)", r"^\W*[\[(]\s*test(?:ing)?\s*[\])]", "subject", False, ("test",)),
    (
        "subject starting with test",
        r"^\s*test(?:ing)?\s*(?:[:#|\-–—]|\d|$)",
        "subject",
        False,
        ("test",),
    ),
    ("[DRAFT]", r"[\[(]\s*draft\s*[\])]", "subject", False, ("draft",)),
    ("[DRAFT]", r"\[\s*draft\s*\]", "body", False, ("draft",)),
    # "Draft: spring sale", "DRAFT 2 - spring sale", "DRAFT Spring sale"; not "Draft beer
    # festival", "DRAFT DAY DEALS" (an all-capitals subject) nor "Draft 2026: our picks".
    (
        "subject starting with DRAFT",
        r"^\W*(?:(?i:draft)(?:\s*(?:v\d+|#?\d{1,2}))?\s*(?:[:|#–—]|-\s|$)|DRAFT\s+(?=[A-Z][a-z]))",
        "subject",
        True,
        ("draft",),
    ),
    ("draft v2", r"draft(?<![^\W_]draft)[ _-]?v\d+(?:\.\d+)*\b", "any", False, ("draft",)),
    (
        "test email",
        r"\btest[ -](?:e-?mail|message|send|mail|campaign|blast)\b",
        "subject",
        False,
        ("test",),
    ),
    ("[TEST]", r"\[\s*test\s*\]", "any", False, ("test",)),
    ("lorem ipsum", r"\blorem ipsum\b|\bdolor sit amet\b", "any", False, ("lorem", "dolor")),
    ("DO NOT SEND", r"\bDO NOT (?:SEND|USE|DISTRIBUTE)\b", "any", True, ("do not",)),
    (
        "NOT FOR DISTRIBUTION",
        r"\bNOT FOR (?:DISTRIBUTION|RELEASE|PUBLICATION|EXTERNAL USE)\b|\bINTERNAL (?:USE )?ONLY\b",
        "any",
        True,
        ("not for", "internal"),
    ),
    (
        "this is a test email",
        r"\bthis is (?:just |only )?a test (?:e-?mail|message|send)\b",
        "any",
        False,
        ("a test",),
    ),
    ("test test", r"\btest,? test\b", "any", False, ("test",)),
    # Placeholder copy a template left behind. Upper case, or inside brackets, only:
    # "insert your card here" and "(add them here)" are prose. Patterns below begin with
    # a literal and look back for what must precede it, which lets the regular expression
    # engine skip ahead to the literal: ten to thirty times faster on a long body.
    (
        "INSERT … HERE",
        r"INSERT(?<!\wINSERT)(?:\s+[A-Z0-9&'’/-]+){0,6}\s+HERE\b",
        "any",
        True,
        ("insert",),
    ),
    (
        "INSERT … HERE",
        r"(?:\[ ?(?:insert|add)|[<{(] ?insert)\b[^\[\]<>{}()\n]{0,60}?\bhere\s*[\]>})]",
        "any",
        False,
        ("insert", "add"),
    ),
    (
        "… goes here",
        (
            r"\b(?:(?:sub-?)?headline|(?:sub-?)?heading|pre-?header|preview|(?:sub)?title|body|"
            r"cta|button|image|hero|banner|caption|content|copy|description|tagline|intro)"
            r"(?:\s+(?:text|copy|image|title|line|label))?\s+(?:goes|will go)\s+here\b"
        ),
        "any",
        False,
        # Decoded text has one space or one newline between words (`tidy`).
        ("goes here", "goes\nhere", "go here", "go\nhere"),
    ),
    (
        "your … here",
        r"your(?<!\wyour)\s+(?:(?:sub)?headline|(?:sub)?title|pre-?header|copy|tagline|content)\s+here\b",
        "any",
        False,
        ("here",),
    ),
    (
        "[placeholder]",
        r"[\[<{(]\s*placeholder\b[^\[\]<>{}()\n]{0,40}[\]>})]",
        "any",
        False,
        ("placeholder",),
    ),
    # TBD as a value that was never filled in: "[TBD]", "Date: TBD", "$TBD", "TBD %", or a
    # line (a table cell) of its own. Not "the venue is TBD" nor "to be decided", which a
    # sender may mean; not lower case.
    (
        "TBD",
        (
            r"(?m)TBD\b(?:(?<=[\[<{(]TBD)(?=[^\[\]<>{}()\n]{0,40}[\]>})])"
            r"|(?<=[\[<{(] TBD)(?=[^\[\]<>{}()\n]{0,40}[\]>})])"
            r"|(?<=:TBD)|(?<=: TBD)|(?<=[$€£¥]TBD)|(?<=[$€£¥] TBD)"
            r"|(?<![^\W_]TBD)(?=\s?%)|(?<=^TBD)(?=[ \t]*$))"
        ),
        "any",
        True,
        ("tbd",),
    ),
    # TK ("to come"), the journalists' placeholder: upper case and standing alone, as a
    # value ("on TK.", "costs TK,", "Photo credit: TK"), in brackets, after a currency sign
    # or doubled (TKTK). Not TKO, "TK Maxx", flight "TK 1980", "Turkish Airlines (TK)",
    # nor a word that merely has the letters.
    (
        "TK",
        (
            r"(?m)TK(?:(?<=\[TK)(?=\])|(?<=[$€£¥]TK)\b|(?<![^\W_]TK)(?:TK)+\b"
            r"|(?:(?<=[a-zß-öø-ÿ] TK)|(?<=:TK)|(?<=: TK)|(?<=^TK))(?=[ \t]*(?:[.,;:!?)]|$)))"
        ),
        "any",
        True,
        ("tk",),
    ),
)

# Link targets. A host is judged by its labels left of the registered domain, so neither
# the TLD (`shop.test`) nor a registered name (devexperts.example, qatar-airways.example)
# counts; a label counts when a word below stands in it alone or between hyphens and
# digits (qa, qa2, uat-shop, shop-staging), not inside a longer word (devon, latest).
_TEST_HOST = re.compile(r"(?<![a-z0-9])(?:staging|stg|qa|uat|pre-?prod)\d*(?![a-z0-9])")
# These also name public sites of other companies (dev.shopify.com, a developer portal),
# so they count only under the sender's own or the internal domains.
_OWN_TEST_HOST = re.compile(r"(?<![a-z0-9])(?:dev|development|test|testing)\d*(?![a-z0-9])")
# Second-level labels under which a country's registered names sit (shop.co.uk): the
# common ones, not the Public Suffix List. One missing here makes a registered name read
# as a label, which counts only when it is a test word itself (qa.gen.xx).
_SECOND_LEVEL = frozenset(
    {"ac", "co", "com", "edu", "gob", "gov", "ltd", "ne", "net", "or", "org", "plc"}
)
# Addresses no reader outside can reach: RFC 1918, shared (CGNAT), link-local, unspecified,
# and IPv6 unique-local; loopback is reported as localhost.
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "0.0.0.0/8",
        "fc00::/7",
        "fe80::/10",
        "::/128",
    )
)
# The host of a web link: after the scheme and any user, before the port or path.
_LINK_HOST = re.compile(r"(?i)(?:https?:)?//(?:[^/?#@\\]*@)?(?:\[([^\]/]*)\]|([^/?#:\\]*))")
_TEXT_LINK = re.compile(r"(?:https?://|www\.)[^\s<>\"'()\[\]]+", re.IGNORECASE)


class MarkerSpec(Strict):
    """A test-send marker given as a regular expression."""

    pattern: str
    name: str | None = None
    where: Literal["subject", "body", "any"] = "any"
    case_sensitive: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return regex(value)


def _marker(spec: str | MarkerSpec) -> Marker:
    """(name, pattern, where, case-sensitive, hints); a string is a literal phrase."""
    if isinstance(spec, str):
        hint = spec.split()[0].lower() if spec.split() else ""
        return (spec, phrase_pattern(spec), "any", False, (hint,) if hint else ())
    return (spec.name or spec.pattern, spec.pattern, spec.where, spec.case_sensitive, ())


class TestMarkers(Rule):
    """Test-send markers hold a campaign unless every recipient is internal."""

    __test__ = False  # not a pytest test class, whatever its name says

    kind: Literal["test_markers"]
    markers: list[str | MarkerSpec] | None = Field(None, description="Replaces the defaults.")
    extra_markers: list[str | MarkerSpec] = Field(default_factory=list)
    internal: bool = Field(default=True, description="Recipients in internal_domains count.")
    domains: list[str] = Field(default_factory=list, description="More internal domains.")
    segment: str | None = Field(None, description="Members of this segment are internal.")
    links: bool = Field(
        default=True, description="Links to localhost, private addresses or test hosts count."
    )
    public_hosts: list[str] = Field(
        default_factory=list, description="Hosts (and subdomains) never taken for test hosts."
    )

    def needs(self, shared: Shared) -> Needs:  # noqa: D102, ARG002
        return Needs(segments=frozenset({self.segment} if self.segment else ()))

    @cached_property
    def compiled(self) -> tuple[Patterns, Patterns]:
        """The markers that count in the subject, and those that count in the body."""
        chosen = list(DEFAULT_MARKERS) if self.markers is None else list(map(_marker, self.markers))
        chosen += [_marker(m) for m in self.extra_markers]
        subject = [(n, rx, case, h) for n, rx, where, case, h in chosen if where != "body"]
        body = [(n, rx, case, h) for n, rx, where, case, h in chosen if where != "subject"]
        return Patterns(subject), Patterns(body)


def find_test_markers(doc: Document, subject: Patterns, body: Patterns) -> list[ContentHit]:
    """Find test-send markers in the subject and the body (each marker once per place)."""
    places = (("subject", doc.subject, subject), ("text", doc.text, body), ("html", doc.html, body))
    return [
        ContentHit(
            "test_marker",
            where,
            match.group().strip(),
            {"marker": name, "context": context(text, *match.span())},
        )
        for where, text, name, match in first_per_place(places)
    ]


def link_marker(host: str, own: Collection[str] = ()) -> str | None:
    """Name what makes a link's host a test host, or None for a host anyone can reach.

    `own` are the sender's and the internal domains, under which `dev` and `test` count.
    """
    if host == "localhost" or host.endswith(".localhost"):
        return "link to localhost"
    address = _address(host) if host[-1:].isdigit() or ":" in host else None
    if address is not None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address.is_loopback:
            return "link to localhost"
        return "link to a private address" if any(address in n for n in _PRIVATE) else None
    labels = host.split(".")
    registered = (
        3 if len(labels) > 2 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL else 2
    )
    left = labels[: max(0, len(labels) - registered)]
    if any(_TEST_HOST.search(label) for label in left):
        return "link to a test host"
    if any(_OWN_TEST_HOST.search(label) for label in left) and _under(host, own):
        return "link to a test host"
    return None


def find_test_links(
    doc: Document, own: Collection[str] = (), public: Collection[str] = ()
) -> list[ContentHit]:
    """Find links to localhost, private addresses and test hosts (each kind once).

    The HTML's link and image targets are what a reader can click or load; a message with
    no HTML part is read for the addresses in its text, which mail programs make links.
    Text in code samples is not read: a tutorial may show `curl http://localhost:3000`.
    """
    targets = doc.links if doc.html.strip() else tuple(_TEXT_LINK.findall(doc.text))
    hits: dict[str, ContentHit] = {}
    judged: dict[str, str | None] = {}  # a newsletter's hundreds of links share a few hosts
    for target in targets:
        link = target.rstrip(".,;:!?")
        host = _host(link)
        if not host:
            continue
        if host not in judged:
            judged[host] = None if _under(host, public) else link_marker(host, own)
        name = judged[host]
        if name and name not in hits:
            cut = fragment(link, 0, len(link))
            hits[name] = ContentHit(
                "test_marker", "link", cut, {"marker": name, "context": cut, "host": host}
            )
    return list(hits.values())


def _host(link: str) -> str | None:
    """Return the lower-case host of a web link (www.… and //… too), or None.

    Not mailto:, tel:, cid:, a relative path or a merge tag. A regular expression rather
    than `urlsplit`, which costs five times as much and raises on some broken links.
    """
    if link[:4].lower() == "www.":
        link = "//" + link
    found = _LINK_HOST.match(link)
    host = (found.group(1) or found.group(2)) if found else ""
    return host.lower().rstrip(".") or None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Return the IP address a host is written as, or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _under(host: str, domains: Collection[str]) -> bool:
    """Tell whether `host` is one of `domains` or a subdomain of one."""
    return any(host == d or host.endswith("." + d) for d in domains)


def scan(rule: TestMarkers, doc: Document, shared: Shared) -> list[ContentHit]:
    """Find test-send markers in the subject and body, then in the link targets."""
    hits = find_test_markers(doc, *rule.compiled)
    if rule.links:
        own = {domain_of(address) for _, address in doc.senders} | {d.lower() for d in rule.domains}
        own |= shared.internal_domains if rule.internal else set()
        public = {h.lower().strip(".") for h in rule.public_hosts}
        hits += find_test_links(doc, own, public)
    return hits


def check(rule: TestMarkers, ctx: Context) -> list[Observation]:
    """Hold a message marked as a test unless every recipient is internal."""
    hits = ctx.scan(rule.id).hits
    if not hits:
        return []
    if rule.segment and (missing := ctx.missing_segments(rule.id, [rule.segment])):
        return missing
    domains = {d.lower() for d in rule.domains} | (ctx.internal_domains if rule.internal else set())
    found = ctx.outside(rule.segment, domains)
    if not found:
        return []
    first = hits[0]
    return [
        Observation(
            kind="test_send",
            message=(
                f"looks like a test send ({first.detail['marker']}: {first.fragment!r} in "
                f"{WHERE[first.where]}) but {len(found)} recipients are not internal"
            ),
            evidence={
                "markers": shown(hits),
                "outside": len(found),
                "sample": ctx.sample(found),
                "internal_domains": sorted(domains),
                "segment": rule.segment,
            },
        )
    ]
