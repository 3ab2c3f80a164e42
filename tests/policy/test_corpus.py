"""No false positives: ordinary, well-formed newsletters and transactional mails (tests/corpus,
written for these tests and varied in structure and language) pass every content rule.

Each message is checked as one message of a bulk campaign (1,000 recipients so far, outside
the internal domains), declared in the locale of its X-Campaign-Locale header, sent on the
day of its Date header.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from gateway.mail.headers import HeaderBlock
from gateway.policy.fixtures import CampaignSpec, evaluate
from gateway.policy.registry import default_registry
from tests.policy.factories import load

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
MESSAGES = sorted(CORPUS.glob("*.eml"))
POLICY = """\
version: 1
internal_domains: [shop.test]
identities:
  - {id: ceo, name: Jane Doe, addresses: [jane@shop.test], signoffs: [Jane, Jane Doe]}
  - {id: founders, signoffs: [Biz, Ev, Jack]}
  - id: sales-reps
    segment: sales-reps
    signoff_patterns: ['^[\\w .''-]+, your account manager$']
rules:
  - {id: signature, kind: signature, bulk_threshold: 100}
  - {id: merge-tags, kind: merge_tags}
  - {id: test-markers, kind: test_markers}
  - {id: seasonal, kind: seasonal}
  - {id: language, kind: language}
  - {id: undecodable, kind: undecodable}
"""


@pytest.fixture(scope="module")
def content_policies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("content-policies")
    (folder / "content.yaml").write_text(POLICY)
    return load(folder)


def test_the_corpus_has_at_least_30_messages():
    assert len(MESSAGES) >= 30


@pytest.mark.parametrize("path", MESSAGES, ids=lambda p: p.stem)
def test_ordinary_mail_passes_every_content_rule(content_policies, path):
    content = path.read_bytes()
    headers = HeaderBlock.parse(content)
    spec = CampaignSpec(
        received=1000,
        recipients=["reader@example.org", "someone@example.net"],
        date=parsedate_to_datetime(headers.get("Date") or ""),
        segments={"sales-reps": ["rep.alice@shop.test", "rep.bob@shop.test"]},
    )
    assert spec.date is not None
    findings = evaluate(content_policies, content, spec, registry=default_registry())
    assert [(f.rule, f.kind, f.message) for f in findings] == []


@pytest.mark.parametrize(
    "name", ["05-event-invitation-es", "06-event-invitation-de", "27-newsletter-ja"]
)
def test_the_same_corpus_mail_declared_in_another_locale_is_held(content_policies, name):
    """The rules did read the corpus: a wrong declaration of the same mail is caught."""
    content = (CORPUS / f"{name}.eml").read_bytes()
    spec = CampaignSpec(received=1000, locale="en", segments={"sales-reps": []})
    findings = evaluate(content_policies, content, spec, registry=default_registry())
    assert [(f.rule, f.kind) for f in findings] == [("language", "language_mismatch")]
