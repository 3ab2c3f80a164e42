"""Language rule: the body is confidently in another language than the declared locale.

Owns the `language` kind: its parameters, its scanner, its check, and the offline
detector they use, Google's CLD3 model (the `cld3-py` wheel). Why CLD3 (docs/policies.md,
`language`): the model ships inside a 0.7 MB wheel with no other dependency, nothing is
downloaded at run time, it gives a probability and a reliability flag, and it reads at
most a few kilobytes of a message in well under a millisecond. The identifier object
keeps scratch state, so each thread gets its own.

Detection runs on the prose a reader sees, without links, addresses, numbers and merge
tags; per paragraph as well, so a bilingual mail (English and French for Canada) reports
the share of each language and is not held for the one it declared second. A paragraph's
detection depends only on its text and is remembered by its digest (`PARAGRAPH_MEMORY`
of them), so the paragraphs a personalised campaign's copies share are detected once.
The whole text's detection reads the paragraphs of prose (`PARAGRAPH_MIN` characters or
more) when they hold most of the letters (`PROSE_SHARE`): the short lines left out are
where a copy differs (the greeting's name, a button, the sign-off), so the copies of a
campaign share that reading too. A recipient's name inside a paragraph of prose makes
its copy's reading its own, read afresh; a body mostly of short lines is read whole.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Literal

import gcld3
from pydantic import Field

from gateway.mail.content import Document
from gateway.mail.memo import Memo
from gateway.model import ContentHit
from gateway.policy.rules.base import Context, Observation, Rule, Shared

MAX_BYTES = 4000  # how much text CLD3 reads, as its own default
MAX_CHARS = 20_000  # of the body looked at for paragraphs; a language shows long before
PARAGRAPH_MIN = 40  # characters a paragraph needs to be detected on its own
PARAGRAPH_MEMORY = 8192  # paragraphs whose detection is remembered (digest + 2 fields each)
PROSE_SHARE = 0.8  # of the letters, in paragraphs of prose, for the whole to be read from them
TEXT_MEMORY = 1024  # whole texts whose detection is remembered (digest + 3 fields each)
_NOISE = re.compile(
    r"https?://\S+|www\.\S+|\S+@\S+|\{\{.*?\}\}|\*\|.*?\|\*|%%.*?%%|[\d#$€£%+*/=_|<>\[\]{}()~^]+"
)
_PARAGRAPHS = re.compile(r"\n\s*\n")
# Codes CLD3 reports that languages are also declared by (ISO 639 pairs and macro-languages).
# Documented in docs/policies.md (`language`).
ALIASES = {
    "iw": "he",
    "in": "id",
    "ji": "yi",
    "jw": "jv",
    "mo": "ro",
    "nb": "no",
    "nn": "no",
    "fil": "tl",
}
_local = threading.local()
# A personalised campaign repeats its template's paragraphs in every copy: each distinct
# paragraph is detected once. What CLD3 says of a paragraph depends only on its text.
_paragraphs: Memo[tuple[str, bool]] = Memo(PARAGRAPH_MEMORY)
_texts: Memo[tuple[str, float, bool]] = Memo(TEXT_MEMORY)


@dataclass(frozen=True, slots=True)
class Detected:
    """The language of a text: the best guess, its probability, and every language's share."""

    language: str  # primary subtag, e.g. "en"; "und" when nothing was detected
    probability: float
    reliable: bool
    chars: int  # letters the detection looked at
    shares: dict[str, float]  # language -> share of the text's paragraphs, by length


def primary(tag: str) -> str:
    """Return the primary language subtag, lower-cased and normalised: `en-US` -> `en`."""
    subtag = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return ALIASES.get(subtag, subtag)


def _identifier() -> gcld3.NNetLanguageIdentifier:
    found = getattr(_local, "identifier", None)
    if found is None:
        found = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=MAX_BYTES)
        _local.identifier = found
    return found


def clean(text: str) -> str:
    """Drop what is not language: links, addresses, numbers, symbols, merge tags."""
    return _NOISE.sub(" ", text)


def detect(text: str) -> Detected:
    """Detect the language of `text` (the whole, and the share of each paragraph's)."""
    prose = clean(text[:MAX_CHARS])
    letters = sum(map(str.isalpha, prose))
    if not letters:
        return Detected("und", 0.0, reliable=False, chars=0, shares={})
    # CLD3 reads only the first MAX_BYTES; compact whitespace so it reads words, not blanks.
    compact = " ".join(prose.split())
    paragraphs = [" ".join(p.split()) for p in _PARAGRAPHS.split(prose)]
    long = [words for words in paragraphs if len(words) >= PARAGRAPH_MIN]
    if sum(map(len, long)) >= PROSE_SHARE * len(compact):
        whole = " ".join(long)  # what copies of one template share
        language, probability, reliable = _texts.get(whole, _text)
    else:
        whole = compact
        language, probability, reliable = _text(compact)
    weights: dict[str, int] = {}
    for words in paragraphs[:20]:
        if len(words) < PARAGRAPH_MIN:
            continue
        # A mail of one paragraph is common: its detection is the whole text's.
        if words == whole:
            code, sure = language, reliable
        else:
            code, sure = _paragraphs.get(words, _paragraph)
        if sure:
            weights[code] = weights.get(code, 0) + len(words)
    total = sum(weights.values())
    shares = {code: round(weight / total, 3) for code, weight in weights.items()} if total else {}
    return Detected(language, probability, reliable=reliable, chars=letters, shares=shares)


def _text(words: str) -> tuple[str, float, bool]:
    """Return the language of a text, CLD3's probability, and whether it calls it reliable."""
    found = _identifier().FindLanguage(words)
    return primary(found.language), round(float(found.probability), 4), bool(found.is_reliable)


def _paragraph(words: str) -> tuple[str, bool]:
    """Return the language of one paragraph and whether CLD3 calls it reliable."""
    language, _, reliable = _text(words)
    return language, reliable


class Language(Rule):
    """The body's language differs from the declared locale, with high confidence."""

    kind: Literal["language"]
    min_confidence: float = Field(0.9, ge=0, le=1, description="Detector probability needed.")
    min_chars: int = Field(120, ge=0, description="Letters a body needs before it is judged.")
    min_share: float = Field(
        0.2, ge=0, le=1, description="Share of paragraphs in the declared language that passes."
    )


def scan(rule: Language, doc: Document, shared: Shared) -> list[ContentHit]:  # noqa: ARG001
    """Detect the body's language."""
    found = detect(doc.body)
    detail = {
        "language": found.language,
        "probability": found.probability,
        "reliable": found.reliable,
        "chars": found.chars,
        "shares": found.shares,
    }
    return [ContentHit("language", "body", found.language, detail)]


def check(rule: Language, ctx: Context) -> list[Observation]:
    """Hold mail whose body is confidently in another language than the declared locale."""
    declared = ctx.campaign.declared.locale
    hits = ctx.scan(rule.id).hits
    if not declared or not hits:
        return []
    detail = hits[0].detail
    wanted = primary(declared)
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
