"""SendGrid's Signed Event Webhook: the signature scheme, freshness, the batch's fields."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook

from gateway.feedback.sendgrid import (
    BatchError,
    SignatureError,
    Verifier,
    load_public_key,
    parse_batch,
)
from tests.clock import ManualClock
from tests.webhooks import Signer, batch, event

NOW = 1_800_000_000.0
BODY = batch([event("delivered", "Ada@Example.org", "01MSG", "01CAMP", 1, NOW)])


def verifier(signer: Signer, clock: ManualClock, tolerance: float = 300) -> Verifier:
    return Verifier(load_public_key(signer.public_key), tolerance, clock)


def test_a_signature_made_as_sendgrid_signs_verifies_and_sendgrids_own_sdk_agrees():
    signer, clock = Signer(), ManualClock(NOW)
    stamp = str(int(NOW))
    signature = signer.signature(BODY, stamp)
    assert verifier(signer, clock).verify(BODY, signature, stamp) == NOW
    sdk = EventWebhook(signer.public_key)  # the scheme is SendGrid's, not ours
    assert sdk.verify_signature(BODY.decode(), signature, stamp)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda body, sig, ts: (body + b" ", sig, ts), "does not match"),
        (lambda body, sig, ts: (body, sig, str(int(ts) + 1)), "does not match"),
        (lambda body, sig, ts: (body, None, ts), "has no"),
        (lambda body, sig, ts: (body, sig, None), "has no"),
        (lambda body, sig, ts: (body, "not base64!", ts), "malformed"),
        (lambda body, sig, ts: (body, sig, "yesterday"), "malformed"),
    ],
)
def test_a_changed_or_missing_signature_is_refused(change, message):
    signer, clock = Signer(), ManualClock(NOW)
    stamp = str(int(NOW))
    body, signature, timestamp = change(BODY, signer.signature(BODY, stamp), stamp)
    with pytest.raises(SignatureError, match=message):
        verifier(signer, clock).verify(body, signature, timestamp)


def test_another_accounts_key_is_refused():
    ours, theirs, clock = Signer(), Signer(), ManualClock(NOW)
    stamp = str(int(NOW))
    with pytest.raises(SignatureError, match="does not match"):
        verifier(ours, clock).verify(BODY, theirs.signature(BODY, stamp), stamp)


@pytest.mark.parametrize(("skew", "word"), [(301, "old"), (-301, "future")])
def test_a_well_signed_but_stale_or_future_timestamp_is_refused(skew, word):
    signer, clock = Signer(), ManualClock(NOW)
    stamp = str(int(NOW - skew))
    signature = signer.signature(BODY, stamp)
    with pytest.raises(SignatureError, match=word):
        verifier(signer, clock).verify(BODY, signature, stamp)
    clock.advance(-skew)  # within the tolerance of when it was signed, it passes
    assert verifier(signer, clock).verify(BODY, signature, stamp)


def test_keys_load_from_base64_der_or_pem_and_only_p256():
    signer = Signer()
    pem = signer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert load_public_key(pem.decode()).curve.name == "secp256r1"
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    der = other.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="P-256"):
        load_public_key(base64.b64encode(der).decode())
    with pytest.raises(ValueError, match="not a base64 DER"):
        load_public_key("c2VuZGJyYWtl")


def test_a_batch_becomes_events_with_the_gateways_ids_and_a_normalised_address():
    [parsed] = parse_batch(BODY)
    assert (parsed.event_id, parsed.event, parsed.kind) == ("sg-event-1", "delivered", "delivered")
    assert (parsed.recipient, parsed.message_id, parsed.at) == ("ada@example.org", "01MSG", NOW)
    assert json.loads(parsed.raw)["sendbrake_campaign"] == "01CAMP"
    assert parsed.evidence["email"] == "Ada@Example.org"


def test_event_names_map_to_counted_kinds_and_others_are_not_counted():
    names = ["delivered", "bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe",
             "open", "processed", "deferred"]  # fmt: skip
    events = parse_batch(
        batch([event(n, "a@x.test", "m", "c", i, NOW) for i, n in enumerate(names)])
    )
    assert [e.kind for e in events] == [
        "delivered", "bounced", "dropped", "complained", "unsubscribed", "unsubscribed",
        None, None, None,
    ]  # fmt: skip


def test_an_event_without_an_id_gets_a_stable_one_from_its_content():
    item = event("open", "a@x.test", "m", "c", 1, NOW)
    del item["sg_event_id"]
    first, second = parse_batch(batch([item, item]))
    assert first.event_id == second.event_id
    assert first.event_id.startswith("sha256:")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b'{"event": "delivered"}', "body"),
        (b'["x"]', "[0]"),
        (b'[{"email": "a@x.test", "timestamp": 1}]', "[0].event"),
        (b'[{"event": "open", "timestamp": 1}]', "[0].email"),
        (b'[{"event": "open", "email": "a@x.test", "timestamp": "soon"}]', "[0].timestamp"),
    ],
)
def test_a_malformed_batch_names_the_field(body, field):
    with pytest.raises(BatchError) as caught:
        parse_batch(body)
    assert caught.value.field == field
