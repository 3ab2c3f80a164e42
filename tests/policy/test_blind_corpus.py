"""The blind corpus (tests/corpus/blind): written by someone who had not read the detectors.

Every hard negative passes every content rule untouched; every disaster is held with a
finding of its own family and no other. Each message is judged as one message of a bulk
campaign (its X-Declared-Size, else 1,000 recipients so far, outside the internal
domains), declared in the locale and category of its headers, on the day of its Date
header, with the identities the corpus was written against (README.md there).
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import yaml

from gateway.mail.headers import HeaderBlock
from gateway.policy.fixtures import CampaignSpec, evaluate
from gateway.policy.registry import default_registry
from tests.policy.factories import load

BLIND = Path(__file__).resolve().parent.parent / "corpus" / "blind"
EXPECTED = yaml.safe_load((BLIND / "expected.yaml").read_text(encoding="utf-8"))
POLICY = """\
version: 1
internal_domains: [shop.test]
identities:
  - {id: ceo, name: Jane Doe, addresses: [jane@shop.test], signoffs: [Jane, Jane Doe]}
  - {id: founders, signoffs: [Biz, Ev, Jack]}
rules:
  - {id: signature, kind: signature, bulk_threshold: 100}
  - {id: merge-tags, kind: merge_tags}
  - {id: test-markers, kind: test_markers}
  - {id: seasonal, kind: seasonal}
  - {id: language, kind: language}
  - {id: undecodable, kind: undecodable}
  - {id: unsubscribe, kind: unsubscribe}
"""
# The finding kinds a disaster of each family must be held with.
FAMILIES = {
    "merge_tags": {"merge_tag"},
    "empty_personalisation": {"empty_personalisation"},
    "test_markers": {"test_send"},
    "seasonal": {"out_of_season"},
    "language": {"language_mismatch"},
    "signature": {"signoff_required"},
    "unsubscribe": {"unsubscribe_missing"},
}


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blind-policies")
    (folder / "content.yaml").write_text(POLICY)
    return load(folder)


def kinds_found(policies, name: str) -> set[str]:
    content = (BLIND / name).read_bytes()
    headers = HeaderBlock.parse(content)
    size = (headers.get("X-Declared-Size") or "").strip()
    spec = CampaignSpec(
        received=int(size) if size.isdigit() else 1000,
        recipients=["reader@example.org"],
        date=parsedate_to_datetime(headers.get("Date") or ""),
    )
    return {f.kind for f in evaluate(policies, content, spec, registry=default_registry())}


def test_the_blind_corpus_has_40_negatives_and_20_disasters_each_with_its_file():
    files = {str(p.relative_to(BLIND)) for p in BLIND.glob("*/*.eml")}
    assert {e["file"] for e in EXPECTED} == files
    negatives = [e for e in EXPECTED if e["family"] == "none"]
    assert len(negatives) >= 40
    assert len(EXPECTED) - len(negatives) >= 20


@pytest.mark.parametrize(
    "entry", [e for e in EXPECTED if e["family"] == "none"], ids=lambda e: e["file"]
)
def test_a_hard_negative_passes_every_content_rule(policies, entry):
    assert kinds_found(policies, entry["file"]) == set(), entry["why"]


@pytest.mark.parametrize(
    "entry", [e for e in EXPECTED if e["family"] != "none"], ids=lambda e: e["file"]
)
def test_a_disaster_is_held_with_a_finding_of_its_family_only(policies, entry):
    assert kinds_found(policies, entry["file"]) == FAMILIES[entry["family"]], entry["why"]
