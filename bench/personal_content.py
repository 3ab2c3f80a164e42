"""Content analysis CPU per personalised message: Engine.analyse over one campaign's copies.

Every copy has its own name and link tokens (bench/personal_client.py's template), so the
whole-content memo never helps: this times what each copy pays with the shipped policy,
one engine kept warm across the copies as in the gateway. Thread CPU time per message,
median and p90 over --messages copies.

    .venv/bin/python bench/personal_content.py --messages 2000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from personal_client import Messages  # noqa: E402

from gateway.policy.engine import Engine  # noqa: E402
from gateway.policy.fixtures import CampaignSpec, submission_for  # noqa: E402
from gateway.policy.loader import load_policies  # noqa: E402
from gateway.policy.registry import default_registry  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=2000)
    args = p.parse_args()
    registry = default_registry()
    engine = Engine(load_policies(REPO / "policies", registry), registry=registry)
    messages = Messages("bench-personal-content", args.messages)
    spec = CampaignSpec(received=args.messages)
    subs = [submission_for(messages.payload(n)[:-3], spec) for n in range(1, args.messages + 1)]
    used = []
    for sub in subs:
        started = time.thread_time()
        report = engine.analyse(sub)
        used.append(time.thread_time() - started)
        if not report.analysed or report.error:
            raise SystemExit(f"not analysed: {report.error}")
    used.sort()
    print(
        f"{args.messages} personalised messages of {len(subs[0].content):,} bytes: analyse CPU"
        f" median {1000 * statistics.median(used):.3f} ms, p90"
        f" {1000 * used[int(0.9 * len(used))]:.3f} ms, first {1000 * used[0]:.3f} ms (min)"
    )


if __name__ == "__main__":
    main()
