"""A held message of 1,000 nested MIME levels: its views render and its release answers.

The views decode the sample message for a preview; a message nested past what the
decoder can walk is shown without one, and a release of its campaign answers what it did,
with its audit entry.
"""

from __future__ import annotations

from gateway.ops.schemas import NOT_RENDERED
from tests.harness import run_gateway
from tests.helpers import eventually

DEPTH = 1000


def nested(depth: int = DEPTH) -> bytes:
    """A multipart/mixed message whose first part is multipart/mixed, `depth` levels down."""
    head = [
        "From: news@shop.test",
        "To: a@example.org",
        "Subject: deep",
        "X-Campaign-ID: deep",
        "MIME-Version: 1.0",
    ]
    lines, tail = [], []
    for level in range(depth):
        lines += [f'Content-Type: multipart/mixed; boundary="b{level}"', "", f"--b{level}"]
        tail.insert(0, f"--b{level}--")
    lines += ["Content-Type: text/plain", "", "Hello from the bottom."]
    return "\r\n".join([*head, *lines, *tail, ""]).encode()


async def test_views_of_a_deeply_nested_message_render_and_its_release_is_audited(
    settings_for, upstream
):
    async with run_gateway(settings_for(upstream.port)) as gw:
        await gw.api().post("/api/v1/relay/pause", {"reason": "keep it queued"})
        await gw.send("news@shop.test", ["a@example.org"], nested())
        status, page = await gw.api().get("/api/v1/campaigns")
        [campaign] = page["items"]
        status, _ = await gw.api().post(
            f"/api/v1/campaigns/{campaign['id']}/hold", {"reason": "look"}
        )
        assert status == 200
        status, detail = await gw.api().get(f"/api/v1/campaigns/{campaign['id']}")
        assert status == 200, detail
        sample = detail["sample"]
        assert sample["subject"] == "deep"
        assert sample["preview"] in {NOT_RENDERED, "Hello from the bottom."}
        status, shown = await gw.api().get(sample["url"])
        assert status == 200, shown
        assert shown["subject"] == "deep"
        await gw.api().post("/api/v1/relay/resume", {"reason": "go"})
        status, released = await gw.api().post(
            f"/api/v1/campaigns/{campaign['id']}/release", {"reason": "checked"}
        )
        assert status == 200, released
        assert released["state"] == "released"
        await eventually(lambda: upstream.recipients)
        _, audit = await gw.api("viewer").get("/api/v1/audit")
    assert [(e["action"], e["outcome"]) for e in audit["items"][:2]] == [
        ("release campaign", "ok"),
        ("resume relay", "ok"),
    ]
