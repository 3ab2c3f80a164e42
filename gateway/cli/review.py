"""`sendbrake campaigns` and `sendbrake relay`: review over the ops HTTP API."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import click

from gateway.cli.client import ApiError, OpsClient, Reply, Unreachable, segment
from gateway.cli.common import dump, escaped, fail, pairs, reason_option, table
from gateway.states import CampaignState

DEFAULT_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Api:
    """The ops API as commands use it: calls that print problems and exit, and output."""

    client: OpsClient
    as_json: bool

    def call(self, method: str, path: str, **options: Any) -> Reply:
        """Call the API (`OpsClient.request`); on an error print it to stderr and exit 1."""
        try:
            return self.client.request(method, path, **options)
        except ApiError as exc:
            lines = [f"error: {exc}"]
            lines += [f"  {e.get('field', '?')}: {e.get('detail', '')}" for e in exc.errors]
            if exc.status == 401 and not self.client.token:
                lines.append("hint: pass --token or set SENDBRAKE_TOKEN")
            fail(*lines)
        except Unreachable as exc:
            fail(f"error: {exc} (is the gateway running? check --url or SENDBRAKE_URL)")

    def output(self, data: Any, human: Callable[[Any], str]) -> None:
        """Print `data` as JSON with --json, else as `human` renders it."""
        click.echo(dump(data) if self.as_json else human(escaped(data)))


def api_options(func: Callable[..., None]) -> Callable[..., None]:
    """Add --url, --token and --json to a command and hand it an `Api` as first argument."""

    @click.option(
        "--url",
        envvar="SENDBRAKE_URL",
        default=DEFAULT_URL,
        show_default=True,
        show_envvar=True,
        help="Base URL of the gateway's HTTP API.",
    )
    @click.option("--token", envvar="SENDBRAKE_TOKEN", show_envvar=True, help="API token.")
    @click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
    @functools.wraps(func)
    def command(url: str, token: str | None, as_json: bool, **kwargs: Any) -> None:
        func(Api(OpsClient(url, token), as_json), **kwargs)

    return command


def _campaign_row(c: Mapping[str, Any]) -> list[object]:
    counters = c["counters"]
    rules = ",".join(dict.fromkeys(f["rule"] for f in c["findings"])) or "-"
    return [
        c["id"],
        c["state"],
        c["key"],
        counters["received"],
        counters["relayed"],
        counters["held"],
        rules,
    ]


def _campaign_block(c: Mapping[str, Any]) -> str:
    """Render GET /campaigns/{id}: declaration, counters, findings, sample, timeline."""
    declared = ", ".join(f"{k} {v}" for k, v in c["declared"].items() if v is not None)
    fields = [
        ("key", c["key"] + ("  (implicit)" if c["implicit"] else "")),
        ("client", c["client"]),
        ("sender", c.get("sender")),
        ("subject", c.get("subject")),
        ("declared", declared or "nothing"),
        ("counters", "  ".join(f"{k} {v}" for k, v in c["counters"].items())),
        ("created", c["created_at"]),
        ("updated", c["updated_at"]),
        ("held since", c.get("held_at")),
    ]
    lines = [f"campaign {c['id']}  {c['state'].upper()}"]
    lines += [f"  {label:<10} {value}" for label, value in fields if value]
    lines += ["", f"findings ({len(c['findings'])})"]
    for f in c["findings"]:
        times = f" ×{f['count']}" if f.get("count", 1) > 1 else ""
        lines.append(f"  {f['rule']} [{f['kind']}, {f['mode']}]{times}: {f['message']}")
        evidence = pairs(f.get("evidence", {}))
        lines.append(f"    at {f['at']}  policy {f['policy_version'] or '-'}  {evidence}".rstrip())
    sample = c.get("sample")
    if sample:
        lines += ["", f"sample message {sample['id']}"]
        lines += [f"  from     {sample.get('from') or sample['mail_from']}"]
        lines += [f"  subject  {sample.get('subject') or ''}"]
        preview = (sample.get("preview") or "").strip().splitlines() or [""]
        lines += [f"  preview  {preview[0]}", *(f"           {p}" for p in preview[1:])]
    lines += ["", "timeline"]
    for event in c.get("timeline", []):
        rest = pairs(event, frozenset({"at", "event", "actor"}))
        lines.append(f"  {event['at']}  {event['event']}  by {event['actor']}  {rest}".rstrip())
    return "\n".join(lines)


def _campaign_line(c: Mapping[str, Any]) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in c["counters"].items() if v)
    return f"campaign {c['id']} ({c['key']}) is {c['state']}: {counts or 'no recipients'}"


@click.group()
def campaigns() -> None:
    """Review campaigns through the ops API of a running gateway."""


@campaigns.command("list")
@click.option("--state", type=click.Choice([str(s) for s in CampaignState]), help="Only these.")
@click.option("--limit", type=click.IntRange(1, 1000), help="Campaigns per page.")
@click.option("--all", "follow", is_flag=True, help="Follow `next` cursors through every page.")
@api_options
def campaigns_list(api: Api, state: str | None, limit: int | None, follow: bool) -> None:
    """List campaigns, newest first (one page unless --all)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = api.call(
            "GET", "/campaigns", query={"state": state, "limit": limit, "cursor": cursor}
        ).body
        items += page["items"]
        cursor = page["next"]
        if not follow or not cursor:
            break
    if cursor and not api.as_json:
        click.echo("more campaigns: use --all, or a larger --limit", err=True)

    def human(data: Mapping[str, Any]) -> str:
        if not data["items"]:
            return "no campaigns"
        header = ("ID", "STATE", "KEY", "RECEIVED", "RELAYED", "HELD", "FINDINGS")
        return table(header, [_campaign_row(c) for c in data["items"]])

    api.output({"items": items, "next": cursor}, human)


@campaigns.command("show")
@click.argument("campaign_id", metavar="ID")
@api_options
def campaigns_show(api: Api, campaign_id: str) -> None:
    """Show one campaign: declaration, counters, findings, sample message and timeline."""
    api.output(api.call("GET", f"/campaigns/{segment(campaign_id)}").body, _campaign_block)


@campaigns.command("release")
@click.argument("campaign_id", metavar="ID")
@reason_option
@click.option("--max-recipients", type=click.IntRange(min=1), help="Release only this many.")
@click.option(
    "--only-segment", metavar="NAME", help="Release only held recipients in this segment."
)
@api_options
def campaigns_release(
    api: Api, campaign_id: str, reason: str, max_recipients: int | None, only_segment: str | None
) -> None:
    """Release a held campaign: all held recipients, the oldest N, or a segment's."""
    body: dict[str, Any] = {"reason": reason}
    if max_recipients is not None:
        body["max_recipients"] = max_recipients
    if only_segment is not None:
        body["only_segment"] = only_segment
    reply = _decide(api, campaign_id, "release", body)
    # 202: the two-person rule applies and this was the first approval.
    api.output(reply.body, _pending_line if reply.status == 202 else _campaign_line)


def _pending_line(data: Mapping[str, Any]) -> str:
    campaign = data["campaign"]
    approvals = ", ".join(data["approvals"])
    return (
        f"approval recorded (approvals: {approvals}; {data['required']} needed): "
        f"{data['detail']}.\nA second operator must run: "
        f"sendbrake campaigns release {campaign['id']} --reason …"
    )


def _decision(action: str, summary: str) -> None:
    """Add `campaigns ACTION ID --reason …`, a decision that answers with the campaign."""

    @campaigns.command(action, help=summary)
    @click.argument("campaign_id", metavar="ID")
    @reason_option
    @api_options
    def command(api: Api, campaign_id: str, reason: str) -> None:
        api.output(_decide(api, campaign_id, action, {"reason": reason}).body, _campaign_line)


_decision("hold", "Hold a campaign now: nothing more of it is relayed until released.")
_decision("reject", "Reject a campaign: discard what has not gone out and refuse its later mail.")


def _decide(api: Api, campaign_id: str, action: str, body: Mapping[str, Any]) -> Reply:
    """POST a decision (hold, release, reject) about one campaign."""
    return api.call("POST", f"/campaigns/{segment(campaign_id)}/{action}", body=body)


@click.group()
def relay() -> None:
    """Pause or resume relaying for the whole gateway."""


def _set_relay(api: Api, action: str, reason: str) -> None:
    reply = api.call("POST", f"/relay/{action}", body={"reason": reason})

    def human(data: Mapping[str, Any]) -> str:
        state = "paused" if data["paused"] else "resumed"
        return f"relay {state} (by {data['by']}: {data['reason']})"

    api.output(reply.body, human)


@relay.command("pause")
@reason_option
@api_options
def relay_pause(api: Api, reason: str) -> None:
    """Stop relaying everything; ingest keeps accepting and spooling mail."""
    _set_relay(api, "pause", reason)


@relay.command("resume")
@reason_option
@api_options
def relay_resume(api: Api, reason: str) -> None:
    """Relay again."""
    _set_relay(api, "resume", reason)
