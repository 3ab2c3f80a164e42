"""Merge-tag rule: unrendered template tags and personalisation that rendered empty.

Owns the `merge_tags` kind: its parameters, the default tag syntaxes and greetings, its
scanner (`{{FirstName}}`, `*|FNAME|*`, `Hi ,` in any visible field or link) and its check.
The defaults were chosen not to fire on ordinary prose, CSS or code samples
(tests/corpus holds the mails that prove it): code samples never reach the scanner, the
syntaxes that prose could imitate (`%FIRSTNAME%`, `-first_name-`) are kept to the shapes
the platforms generate, and the greeting check needs a blank before the comma (`Hi ,`),
which no language's punctuation puts there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator

from gateway.mail.content import Document
from gateway.model import ContentHit
from gateway.policy.rules.base import SAMPLE, Context, Observation, Rule, Shared, regex
from gateway.policy.rules.patterns import WHERE, Patterns, context, fragment, more, shown

# Greetings that, followed by a blank and a comma, show a personalisation that rendered empty.
_GREETING_WORDS = (  # a list of words reads best as words
    "hi hello hey dear greetings "  # en
    "hallo liebe lieber geehrte geehrter moin servus "  # de
    "hola estimado estimada querido querida "  # es
    "bonjour salut cher chère chers chères "  # fr
    "ciao caro cara gentile salve "  # it
    "olá oi prezado prezada "  # pt
    "beste hoi geachte "  # nl
    "hej hei hallå kära kjære kære "  # sv, nb, da
    "cześć witaj drogi droga szanowny szanowna"  # pl
)
DEFAULT_GREETINGS = tuple(_GREETING_WORDS.split())
# "Hola -" of a greeting just before a dash: fixed-width look-behinds, one per word, that
# run only at a dash (a pattern that starts with a literal is searched for at C speed).
_AFTER_GREETING = "|".join(rf"(?<=\b{re.escape(w)}[ \t\u00a0]-)" for w in DEFAULT_GREETINGS)
# ActiveCampaign's own personalisation tags; its custom fields are upper case with `_`.
_ACTIVECAMPAIGN = (
    "FIRSTNAME", "LASTNAME", "FULLNAME", "EMAIL", "PHONE", "ORGNAME", "SUBSCRIBERID",
    "LISTNAME", "TODAY", "UNSUBSCRIBELINK", "UPDATELINK", "WEBCOPY", "FORWARD2FRIEND",
    "SENDER-INFO", "SENDER-INFO-SINGLELINE",
)  # fmt: skip
_MAUTIC_FIELDS = ("contactfield", "leadfield", "ownerfield", "pagelink", "assetlink", "formfield")
_MAUTIC_TOKENS = (
    "unsubscribe_text", "unsubscribe_url", "webview_text", "webview_url", "tracking_pixel",
)  # fmt: skip
_CAMPAIGN_MONITOR = ("firstname", "lastname", "fullname", "email")

# Template syntaxes of DESIGN.md §3, with the systems that use them.
DEFAULT_MERGE_TAGS: dict[str, str] = {  # name -> regular expression (hints: TAG_HINTS)
    # {{FirstName}} Mustache, Handlebars, Liquid, Jinja, HubL, Go, Marketo, Pardot, Klaviyo
    "handlebars": r"\{\{\{?[^{}\n]{1,100}\}\}\}?",
    # {{${first_name} | default: 'there'}} Braze: a Liquid tag around an attribute
    "braze": r"\{\{[^{}\n]{0,40}\$\{[^{}\n]{1,60}\}[^{}\n]{0,100}\}\}",
    "jinja-tag": r"\{%-?[^%\n]{1,100}-?%\}",  # {% if %} Liquid, Jinja, HubL, Klaviyo
    "jinja-comment": r"\{#-?[^#{}\n]{1,100}-?#\}",  # {# note #} Jinja, Twig
    "mailchimp": r"\*\|[A-Za-z0-9_:\- ]{1,60}\|\*",  # *|FNAME|*
    "ampscript": r"%%=?[A-Za-z_@][\w.\-:()@,\[\]\" ]{0,60}=?%%",  # %%First_Name%% Salesforce MC
    "ampscript-block": r"(?s:%%\[.{1,500}?\]%%)",  # %%[ SET @x = ... ]%% Salesforce MC
    "salesforce": r"\{![A-Za-z$][\w.:]{0,60}\}",  # {!Contact.FirstName}
    "dollar-brace": r"\$\{[A-Za-z_][\w.\-\[\]'\" ]{0,60}\}",  # ${name} FreeMarker, Velocity
    "double-bracket": r"\[\[[A-Za-z_][\w .\-:]{0,60}\]\]",  # [[name]] Iterable data feeds
    "mailgun": r"%recipient(?:[._][\w-]{1,40})?%|%(?:tag_|mailing_list_)?unsubscribe_url%",
    "campaign-monitor": (  # [firstname,fallback=there]; never a Markdown link [Email](…)
        r"(?i:\[(?:" + "|".join(_CAMPAIGN_MONITOR) + r")\])(?!\()"
        r"|\[[A-Za-z][\w ]{0,40},\s*fallback=[^\]\n]{0,40}\]"
    ),
    "mautic": (  # {contactfield=firstname}, {unsubscribe_url}
        r"\{(?:" + "|".join(_MAUTIC_FIELDS) + r")=[^{}\n]{1,80}\}"
        r"|\{(?:" + "|".join(_MAUTIC_TOKENS) + r")\}"
    ),
    "activecampaign": (  # %FIRSTNAME%, %SHOE_SIZE%; never "50% off ... 20%"
        r"%(?<![\w%]%)(?:"
        + "|".join(_ACTIVECAMPAIGN)
        + r"|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)%(?![\w%])"
    ),
    "sendgrid": r"\[%[A-Za-z_][\w ]{0,40}%\]",  # [%first_name%] legacy newsletters
    "sendgrid-legacy": (  # -first_name- anywhere; -name- only after a greeting: "Hola -name-:"
        r"-(?:(?<![\w-]-)[a-z][a-z0-9]*(?:_[a-z0-9]+)+"
        r"|(?=[a-z][a-z0-9]{1,30}-)(?i:" + _AFTER_GREETING + r")[a-z][a-z0-9]{1,30})-(?![\w-])"
    ),
    "erb": r"<%(?!%)[^\n]{1,120}?%>",  # <%= @user.first_name %> ERB, EJS; SendGrid <%body%>
}
TAG_HINTS: dict[str, tuple[str, ...]] = {
    "handlebars": ("{{",),
    "braze": ("${",),
    "jinja-tag": ("{%",),
    "jinja-comment": ("{#",),
    "mailchimp": ("*|",),
    "ampscript": ("%%",),
    "ampscript-block": ("%%[",),
    "salesforce": ("{!",),
    "dollar-brace": ("${",),
    "double-bracket": ("[[",),
    "mailgun": ("%recipient", "unsubscribe_url%"),
    "campaign-monitor": ("fallback=", *(f"[{name}]" for name in _CAMPAIGN_MONITOR)),
    "mautic": tuple(f"{{{name}" for name in (*_MAUTIC_FIELDS, *_MAUTIC_TOKENS)),
    "activecampaign": ("%",),
    "sendgrid": ("[%",),
    "sendgrid-legacy": ("-",),
    "erb": ("<%",),
}
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
            fragment(text, start, end),
            {"syntax": name, "context": context(text, start, end)},
        )
        for where, text in doc.fields()
        if where != "link"
        for name, start, end in outermost(tags, text)
    ]
    # Links are read as one text, one target per line, so hundreds of links cost one pass.
    links = "\n".join(doc.links)
    for name, start, end in outermost(tags, links):
        line = links.rfind("\n", 0, start) + 1
        stop = links.find("\n", end)
        target = links[line : stop if stop >= 0 else len(links)]
        detail = {"syntax": name, "context": target[:200]}
        hits.append(ContentHit("merge_tag", "link", fragment(links, start, end), detail))
    return hits


def outermost(tags: Patterns, text: str) -> Iterator[tuple[str, int, int]]:
    """Yield (syntax, start, end) of each tag in `text`, in order, none inside another.

    Syntaxes nest (Braze's `{{${first_name}}}` holds a `${…}`, `[[FirstName]]` a
    Campaign Monitor `[FirstName]`): the tag a reader sees is the outermost, found once.
    """
    found = sorted(
        ((*match.span(), name) for name, match in tags.finditer(text)),
        key=lambda hit: (hit[0], -hit[1]),
    )
    reached = -1
    for start, end, name in found:
        if end > reached:  # not inside the tag before it
            reached = end
            yield name, start, end


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
    # Who got the message: a platform renders per recipient, so the leak is theirs.
    recipients = list(ctx.submission.rcpt_tos[:SAMPLE])
    if tags:
        where = f"in {WHERE[tags[0].where]}{more(tags)}"
        message = f"unrendered merge tag {tags[0].fragment} {where}"
        evidence = {"tags": len(tags), "found": shown(tags), "recipients": recipients}
        found.append(Observation(kind="merge_tag", message=message, evidence=evidence))
    if empty:
        where = f"in {WHERE[empty[0].where]}{more(empty)}"
        message = f"personalisation rendered empty: {empty[0].fragment!r} {where}"
        evidence = {"found": shown(empty), "recipients": recipients}
        found.append(Observation("empty_personalisation", message, evidence))
    return found
