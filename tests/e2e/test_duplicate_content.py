"""The re-run job with a new campaign id: the same content to the same people under another
key is held (shipped `sent-again` rule, over 10 recipients); the same content to other
people, and the next messages of the same campaign, pass."""

from __future__ import annotations

from tests.harness import run_gateway
from tests.mail import addresses, message

BODY = "Our spring collection is here: linen shirts, light dresses and handmade sandals."


async def campaign(gw, key: str) -> dict:
    _, page = await gw.api().get("/api/v1/campaigns?limit=100")
    return next(c for c in page["items"] if c["key"] == key)


def kinds(c: dict) -> list[str]:
    return [f["kind"] for f in c["findings"]]


async def test_the_same_content_to_the_same_people_under_a_new_key_is_held(settings_for, upstream):
    readers = addresses("reader", 50)
    async with run_gateway(settings_for(upstream.port)) as gw:
        first = message(subject="Spring is here", body=BODY, X_Campaign_ID="spring-1")
        await gw.send("news@shop.test", readers, first)
        # The job runs again with a new id; links carry new tracking tokens, case differs.
        rerun = message(
            subject="SPRING is  here",
            body=BODY + "\r\nhttps://shop.test/t/9f3e2a",
            X_Campaign_ID="spring-1-retry",
        )
        await gw.send("news@shop.test", readers, rerun)
        other = message(subject="Spring is here", body=BODY, X_Campaign_ID="spring-2")
        await gw.send("news@shop.test", addresses("next", 50), other)
        held, fine, original = [
            await campaign(gw, key) for key in ("spring-1-retry", "spring-2", "spring-1")
        ]
    assert held["state"] == "held"
    assert kinds(held) == ["duplicate_content"]
    assert held["findings"][0]["evidence"]["overlap"] == 50
    assert (fine["state"], kinds(fine)) == ("open", [])
    assert (original["state"], kinds(original)) == ("open", [])


async def test_personalised_mail_sent_again_is_held_once_past_the_overlap_limit(
    settings_for, upstream
):
    names = [f"Reader{i}" for i in range(15)]

    def personal(name: str, key: str) -> bytes:
        return message(subject="Your picks", body=f"Hi {name}, {BODY}", X_Campaign_ID=key)

    async with run_gateway(settings_for(upstream.port)) as gw:
        for name in names:
            await gw.send("news@shop.test", [f"{name}@example.org"], personal(name, "picks"))
        states = []
        for name in names:
            await gw.send("news@shop.test", [f"{name}@example.org"], personal(name, "picks-2"))
            states.append((await campaign(gw, "picks-2"))["state"])
        first = await campaign(gw, "picks")
    assert states == ["open"] * 10 + ["held"] * 5  # held at its 11th overlapping recipient
    assert (first["state"], kinds(first)) == ("open", [])


async def test_more_messages_of_one_campaign_with_the_same_content_are_not_duplicates(
    settings_for, upstream
):
    async with run_gateway(settings_for(upstream.port)) as gw:
        for batch in range(3):
            content = message(subject="Weekly digest", body=BODY, X_Campaign_ID="digest-48")
            await gw.send("news@shop.test", addresses(f"b{batch}-", 20), content)
        digest = await campaign(gw, "digest-48")
    assert (digest["state"], digest["counters"]["received"], kinds(digest)) == ("open", 60, [])
