"""Merge-tag rule: unrendered template tags and personalisation that rendered empty.

Owns the `merge_tags` kind: its parameters, the default tag syntaxes and greetings, its
scanner (`{{FirstName}}`, `*|FNAME|*`, `Hi ,` in any visible field or link) and its check.
The defaults were chosen not to fire on ordinary prose, CSS or code samples
(tests/corpus holds the mails that prove it): code samples never reach the scanner, and
the greeting check needs a blank before the comma (`Hi ,`), which no language's
punctuation puts there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator

from gateway.mail.content import Document
from gateway.model import ContentHit
from gateway.policy.rules.base import Context, Observation, Rule, Shared, regex
from gateway.policy.rules.patterns import WHERE, Patterns, context, fragment, more, shown

# Template syntaxes of DESIGN.md §3, with the systems that use them.
DEFAULT_MERGE_TAGS: dict[str, str] = {  # name -> regular expression (hints: TAG_HINTS)
    "handlebars": r"\{\{\{?[^{}\n]{1,100}\}\}\}?",  # {{FirstName}} Mustache, Liquid, Jinja, HubL
    "jinja-tag": r"\{%-?[^%\n]{1,100}-?%\}",  # {% if %} Liquid, Jinja
    "mailchimp": r"\*\|[A-Za-z0-9_:\- ]{1,60}\|\*",  # *|FNAME|*
    "ampscript": r"%%=?[A-Za-z_@][\w.\-:()@,\[\]\" ]{0,60}=?%%",  # %%First_Name%% Salesforce MC
    "salesforce": r"\{![A-Za-z$][\w.:]{0,60}\}",  # {!Contact.FirstName}
    "dollar-brace": r"\$\{[A-Za-z_][\w.\-\[\]'\" ]{0,60}\}",  # ${name} FreeMarker, JS
    "double-bracket": r"\[\[[A-Za-z_][\w .\-:]{0,60}\]\]",  # [[name]]
    "mailgun": r"%recipient(?:[._][\w-]{1,40})?%",  # %recipient.first%
    "campaign-monitor": r"(?i:\[(?:firstname|lastname|fullname|email)(?:,\s*fallback=[^\]\n]{0,40})?\])",
}
TAG_HINTS: dict[str, tuple[str, ...]] = {
    "handlebars": ("{{",),
    "jinja-tag": ("{%",),
    "mailchimp": ("*|",),
    "ampscript": ("%%",),
    "salesforce": ("{!",),
    "dollar-brace": ("${",),
    "double-bracket": ("[[",),
    "mailgun": ("%recipient",),
    "campaign-monitor": ("[firstname", "[lastname", "[fullname", "[email"),
}
# Greetings that, followed by a blank and a comma, show a personalisation that rendered empty.
_GREETING_WORDS = (  # a list of words reads best as words
    "hi hello hey dear greetings hallo liebe lieber hola estimado estimada querido querida "
    "bonjour salut cher chère ciao caro cara olá oi hej beste"
)
DEFAULT_GREETINGS = tuple(_GREETING_WORDS.split())
_GAP_COMMA = re.compile(r"[ \t\u00a0]+,")
_LAST_WORD = re.compile(r"(?<!')([^\W\d_]+)$")


class MergeTags(Rule):
    """Unrendered template tags and empty personalisation (`Hi ,`)."""

    kind: Literal["merge_tags"]
    patterns: dict[str, str] | None = Field(None, description="Name -> regex; replaces defaults.")
    extra_patterns: dict[str, str] = Field(default_factory=dict, description="Added to defaults.")
    empty_greetings: bool = True
    greetings: list[str] | None = Field(None, description="Greeting words; replaces defaults.")

    @field_validator("patterns", "extra_patterns")
    @classmethod
    def _patterns_compile(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return value if value is None else {k: regex(v) for k, v in value.items()}

    @cached_property
    def compiled(self) -> Patterns:
        """Every tag syntax this rule looks for (the defaults with their hints)."""
        chosen = DEFAULT_MERGE_TAGS if self.patterns is None else self.patterns
        hints = TAG_HINTS if self.patterns is None else {}
        return Patterns(
            [(k, v, True, hints.get(k, ())) for k, v in {**chosen, **self.extra_patterns}.items()]
        )

    @cached_property
    def greeting(self) -> frozenset[str]:
        """The greeting words of the empty-greeting check."""
        return greeting_pattern(self.greetings or DEFAULT_GREETINGS)


def merge_tags(doc: Document, tags: Patterns) -> list[ContentHit]:
    """Find unrendered template tags in every visible field of the message."""
    hits = [
        ContentHit(
            "merge_tag",
            where,
            fragment(text, *match.span()),
            {"syntax": name, "context": context(text, *match.span())},
        )
        for where, text in doc.fields()
        if where != "link"
        for name, match in tags.finditer(text)
    ]
    # Links are read as one text, one target per line, so hundreds of links cost one pass.
    links = "\n".join(doc.links)
    for name, match in tags.finditer(links):
        start = links.rfind("\n", 0, match.start()) + 1
        end = links.find("\n", match.end())
        target = links[start : end if end >= 0 else len(links)]
        detail = {"syntax": name, "context": target[:200]}
        hits.append(ContentHit("merge_tag", "link", fragment(links, *match.span()), detail))
    return hits


def greeting_pattern(greetings: Iterable[str]) -> frozenset[str]:
    """Return the greeting words (lower-cased) that `Hi ,` / `Dear  ,` start with."""
    return frozenset(g.lower() for g in greetings)


def empty_greetings(doc: Document, greetings: frozenset[str]) -> list[ContentHit]:
    """Find greetings followed by a blank where the name should be, and a comma."""
    hits = []
    for where, text in doc.fields():
        if where == "link" or "," not in text:
            continue
        for gap in _GAP_COMMA.finditer(text):  # rare: a blank before a comma
            word = _LAST_WORD.search(text, max(0, gap.start() - 30), gap.start())
            if word and word.group(1).lower() in greetings:
                span = (word.start(), gap.end())
                detail = {"context": context(text, *span)}
                hits.append(ContentHit("empty_greeting", where, text[slice(*span)], detail))
    return hits


def scan(rule: MergeTags, doc: Document, shared: Shared) -> list[ContentHit]:  # noqa: ARG001
    """Find unrendered tags and empty greetings."""
    hits = merge_tags(doc, rule.compiled)
    if rule.empty_greetings:
        hits += empty_greetings(doc, rule.greeting)
    return hits


def check(rule: MergeTags, ctx: Context) -> list[Observation]:
    """Hold mail with unrendered merge tags or personalisation that rendered empty."""
    hits = ctx.scan(rule.id).hits
    tags = [h for h in hits if h.what == "merge_tag"]
    empty = [h for h in hits if h.what == "empty_greeting"]
    found = []
    if tags:
        where = f"in {WHERE[tags[0].where]}{more(tags)}"
        message = f"unrendered merge tag {tags[0].fragment} {where}"
        evidence = {"tags": len(tags), "found": shown(tags)}
        found.append(Observation(kind="merge_tag", message=message, evidence=evidence))
    if empty:
        where = f"in {WHERE[empty[0].where]}{more(empty)}"
        message = f"personalisation rendered empty: {empty[0].fragment!r} {where}"
        found.append(Observation("empty_personalisation", message, {"found": shown(empty)}))
    return found
