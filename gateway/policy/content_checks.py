"""Content checks: merge tags, test markers, seasonal phrases, language, undecodable content.

Each kind has a scanner and a check. Scanners run off the event loop on the decoded
message (`Document`) and return hits; they are pure functions of the rule and the
message. Checks run inside the spool transaction and turn those hits into observations
with what only the campaign knows: who the recipients are, what locale it declared,
what day it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.content import ContentHit, Document
from gateway.policy import detectors, language
from gateway.policy.content_rules import Language, MergeTags, Seasonal, TestMarkers, Undecodable
from gateway.policy.context import SAMPLE, Check, Context, Observation
from gateway.policy.segmentation import missing_segments
from gateway.segments import domain_of

Scanner = Callable[[Any, Document], Sequence[ContentHit]]
_WHERE = {
    "subject": "the subject",
    "from_name": "the From name",
    "text": "the text part",
    "html": "the HTML part",
    "link": "a link",
    "signoff": "the closing lines",
}


def _shown(hits: Sequence[ContentHit]) -> list[dict[str, Any]]:
    return [{"where": h.where, "fragment": h.fragment, **h.detail} for h in hits[:SAMPLE]]


def _more(hits: Sequence[ContentHit]) -> str:
    return f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""


# -- merge tags ------------------------------------------------------------------------


def scan_merge_tags(rule: MergeTags, doc: Document) -> list[ContentHit]:
    """Find unrendered tags and empty greetings."""
    hits = detectors.merge_tags(doc, rule.compiled)
    if rule.empty_greetings:
        hits += detectors.empty_greetings(doc, rule.greeting)
    return hits


def merge_tags(rule: MergeTags, ctx: Context) -> list[Observation]:
    """Hold mail with unrendered merge tags or personalisation that rendered empty."""
    found = []
    hits = ctx.scan(rule.id).hits
    tags = [h for h in hits if h.what == "merge_tag"]
    if tags:
        first = tags[0]
        found.append(
            Observation(
                kind="merge_tag",
                message=f"unrendered merge tag {first.fragment} in {_WHERE[first.where]}{_more(tags)}",
                evidence={"tags": len(tags), "found": _shown(tags)},
            )
        )
    empty = [h for h in hits if h.what == "empty_greeting"]
    if empty:
        first = empty[0]
        found.append(
            Observation(
                kind="empty_personalisation",
                message=(
                    f"personalisation rendered empty: {first.fragment!r} in "
                    f"{_WHERE[first.where]}{_more(empty)}"
                ),
                evidence={"found": _shown(empty)},
            )
        )
    return found


# -- test markers ----------------------------------------------------------------------


def scan_test_markers(rule: TestMarkers, doc: Document) -> list[ContentHit]:
    """Find test-send markers."""
    return detectors.find_test_markers(doc, *rule.compiled)


def marked_as_test(rule: TestMarkers, ctx: Context) -> list[Observation]:
    """Hold a message marked as a test unless every recipient is internal."""
    hits = ctx.scan(rule.id).hits
    if not hits:
        return []
    if rule.segment and (missing := missing_segments(rule.id, [rule.segment], ctx)):
        return missing
    domains = {d.lower() for d in rule.domains} | (ctx.internal_domains if rule.internal else set())
    members = ctx.facts.members.get(rule.segment, frozenset()) if rule.segment else frozenset()
    outside = frozenset(
        i
        for i, box in enumerate(ctx.submission.mailboxes)
        if i not in members
        and not any(domain_of(box) == d or domain_of(box).endswith("." + d) for d in domains)
    )
    if not outside:
        return []
    first = hits[0]
    return [
        Observation(
            kind="test_send",
            message=(
                f"looks like a test send ({first.detail['marker']}: {first.fragment!r} in "
                f"{_WHERE[first.where]}) but {len(outside)} recipients are not internal"
            ),
            evidence={
                "markers": _shown(hits),
                "outside": len(outside),
                "sample": ctx.sample(outside),
                "internal_domains": sorted(domains),
                "segment": rule.segment,
            },
        )
    ]


# -- seasonal phrases ------------------------------------------------------------------


def scan_seasonal(rule: Seasonal, doc: Document) -> list[ContentHit]:
    """Find seasonal phrases."""
    return detectors.seasonal_phrases(doc, *rule.compiled)


def in_window(day: tuple[int, int], start: tuple[int, int], end: tuple[int, int]) -> bool:
    """Tell whether (month, day) is in the inclusive window, which may wrap over 31 Dec."""
    if start <= end:
        return start <= day <= end
    return day >= start or day <= end


def seasonal(rule: Seasonal, ctx: Context) -> list[Observation]:
    """Hold mail whose seasonal phrases are out of season on the day it is sent."""
    today = datetime.fromtimestamp(ctx.now, UTC).astimezone(ZoneInfo(rule.timezone)).date()
    day = (today.month, today.day)
    windows = {p.phrase: (p.start, p.end) for p in rule.compiled[1].values()}
    late = [
        h for h in ctx.scan(rule.id).hits if not in_window(day, *windows[str(h.detail["phrase"])])
    ]
    if not late:
        return []
    first = late[0]
    return [
        Observation(
            kind="out_of_season",
            message=(
                f"{first.fragment!r} in {_WHERE[first.where]} belongs to "
                f"{first.detail['from']}..{first.detail['until']}, but today is "
                f"{today.isoformat()} ({rule.timezone}){_more(late)}"
            ),
            evidence={"date": today.isoformat(), "timezone": rule.timezone, "found": _shown(late)},
        )
    ]


# -- language --------------------------------------------------------------------------


def scan_language(rule: Language, doc: Document) -> list[ContentHit]:  # noqa: ARG001
    """Detect the body's language."""
    found = language.detect(doc.body)
    detail = {
        "language": found.language,
        "probability": found.probability,
        "reliable": found.reliable,
        "chars": found.chars,
        "shares": found.shares,
    }
    return [ContentHit("language", "body", found.language, detail)]


def language_mismatch(rule: Language, ctx: Context) -> list[Observation]:
    """Hold mail whose body is confidently in another language than the declared locale."""
    declared = ctx.campaign.declared.locale
    hits = ctx.scan(rule.id).hits
    if not declared or not hits:
        return []
    detail = hits[0].detail
    wanted = language.primary(declared)
    detected = str(detail["language"])
    shares: dict[str, float] = dict(detail["shares"])
    if (
        detected in {wanted, "und"}
        or int(detail["chars"]) < rule.min_chars
        or not detail["reliable"]
        or float(detail["probability"]) < rule.min_confidence
        or shares.get(wanted, 0.0) >= rule.min_share
    ):
        return []
    return [
        Observation(
            kind="language_mismatch",
            message=(
                f"the body reads as {detected!r} (probability {float(detail['probability']):.2f}) "
                f"but the campaign declared locale {declared!r}"
            ),
            evidence={
                "declared": declared,
                "detected": detected,
                "probability": detail["probability"],
                "shares": shares,
                "chars": detail["chars"],
                "min_confidence": rule.min_confidence,
            },
        )
    ]


# -- undecodable -----------------------------------------------------------------------


def scan_undecodable(rule: Undecodable, doc: Document) -> list[ContentHit]:  # noqa: ARG001
    """List what could not be decoded."""
    return [ContentHit("undecodable", "message", problem) for problem in doc.problems]


def undecodable(rule: Undecodable, ctx: Context) -> list[Observation]:
    """Hold mail whose content could not be decoded: it cannot have been checked."""
    hits = ctx.scan(rule.id).hits
    if not hits:
        return []
    return [
        Observation(
            kind="undecodable_content",
            message=f"content could not be decoded, so it was not checked: {hits[0].fragment}{_more(hits)}",
            evidence={"problems": [h.fragment for h in hits[:SAMPLE]]},
        )
    ]


SCANS: dict[type, Scanner] = {
    MergeTags: scan_merge_tags,
    TestMarkers: scan_test_markers,
    Seasonal: scan_seasonal,
    Language: scan_language,
    Undecodable: scan_undecodable,
}
CHECKS: dict[type, Check] = {
    MergeTags: merge_tags,
    TestMarkers: marked_as_test,
    Seasonal: seasonal,
    Language: language_mismatch,
    Undecodable: undecodable,
}
