"""Content checks on a 100 KB HTML message: median time of decoding and of each scanner.

Builds a realistic newsletter (multipart/alternative, quoted-printable text, base64 HTML
with <style>, tables, images, links and code samples) padded to ~100 KB of HTML, loads the
shipped policy plus the example signature policy, and times, over many runs:

- `decode`: MIME parsing and decoding, HTML to text (once per message, shared by all);
- each rule's scanner on the decoded document (what runs off the event loop);
- `analyse`: the whole off-loop phase as the admitter runs it (decode + every scanner),
  for content the engine has not read before;
- `recall`: the same content again (another recipient of a campaign whose body is not
  personalised), which the admitter looks up on the event loop;
- `decide`: the in-transaction phase for one message of a 5,000-recipient campaign.

Run: .venv/bin/python bench/content_bench.py [--runs 200]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.mail.content import decode  # noqa: E402
from gateway.policy.engine import Engine  # noqa: E402
from gateway.policy.fixtures import CampaignSpec, campaign_for, facts_for, submission_for  # noqa: E402
from gateway.policy.loader import load_policies  # noqa: E402
from gateway.policy.registry import default_registry  # noqa: E402
from tests.mail import build, html_page  # noqa: E402

SECTION = """<h2>{n}. What's new in the workshop</h2>
<p>Our makers spent the month on linen, waxed cotton and a new rain jacket that folds into
its own pocket. <a href="https://shop.test/story/{n}?utm_source=email">Read the story</a>,
or see <img src="https://cdn.shop.test/img/{n}.jpg" alt="Photo {n} of the workshop"> the
photos. Prices start at $49; 20% off for members until Sunday.</p>
<table role="presentation" width="100%"><tr><td style="padding:8px;color:#333">Linen shirt</td>
<td align="right">$59.00</td></tr><tr><td>Rain jacket</td><td align="right">$89.00</td></tr></table>
<pre><code>{{% for item in items %}}{{{{ item.name }}}}{{% endfor %}}</code></pre>
"""


def message(size: int = 100_000) -> bytes:
    body, n = [], 0
    while sum(map(len, body)) < size:
        n += 1
        body.append(SECTION.format(n=n))
    html = html_page("".join(body), preheader="Linen, waxed cotton and a new jacket")
    text = "What's new in the workshop. Linen, waxed cotton, a new rain jacket.\n\n" * 200
    return build(
        subject="The workshop, March edition", text=text + "Thanks,\nThe Shop team\n", html=html
    )


def timed(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(REPO / "policies" / "default.yaml", folder)
        for path in (REPO / "policies" / "examples" / "signature").glob("*.*"):
            shutil.copy(path, folder)
        registry = default_registry()
        policies = load_policies(folder, registry)
        content = message()
        html_bytes = len(content)
        engine = Engine(policies, registry=registry)
        spec = CampaignSpec(received=5000, date=datetime(2027, 3, 10, 12, tzinfo=UTC))
        sub = submission_for(content, spec)
        doc = decode(content)
        rows = [("decode (MIME + HTML to text)", timed(lambda: decode(content), args.runs))]
        for active in policies.rules:
            scan = registry.unit(active.rule).scan
            if scan is None:
                continue
            fn = lambda r=active.rule, s=scan: s(r, doc, policies.shared)  # noqa: E731
            rows.append((f"{active.rule.kind} ({active.id})", timed(fn, args.runs)))
        # A fresh engine per run remembers nothing: the first reading of a content.
        rows.append(
            (
                "analyse, first reading: decode + every scanner",
                timed(lambda: Engine(policies, registry=registry).analyse(sub), args.runs),
            )
        )
        engine.analyse(sub)
        rows.append(
            (
                "recall, the same content again (on the loop)",
                timed(lambda: engine.recall(sub), args.runs),
            )
        )
        full = replace(sub, report=engine.analyse(sub))
        campaign = campaign_for(full, spec)
        facts = facts_for(engine, campaign, full, spec)
        rows.append(
            (
                "decide (in the spool transaction)",
                timed(lambda: engine.decide(campaign, full, facts), args.runs),
            )
        )
    print(
        f"message: {html_bytes / 1000:.0f} KB on the wire, HTML text {len(doc.html) / 1000:.0f} KB, "
        f"{len(doc.links)} links; {args.runs} runs each; median ms"
    )
    print(
        f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}, "
        f"{datetime.now(UTC):%Y-%m-%d}"
    )
    print("| step | median ms |\n|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} |")


if __name__ == "__main__":
    main()
