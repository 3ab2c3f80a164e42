"""`sendbrake policies`: check policy files, run their tests, explain a message.

`check` loads a folder as the gateway would. `test` runs the fixtures kept in its `tests/`
folder (gateway/policy/fixtures.py) and fails with a readable diff, like `promtool test
rules`. `explain` prints what every rule says about one `.eml` file.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from pathlib import Path

import click

from gateway.cli.common import config_option, fail, load_settings, plural, table
from gateway.cli.replay import Replay, replay
from gateway.cli.spool import with_spool
from gateway.errors import ConfigError, PolicyError
from gateway.mail.content import decode
from gateway.policy.engine import DECLARATION_RULE, Engine
from gateway.policy.fixtures import (
    CampaignSpec,
    Outcome,
    campaign_for,
    evaluate,
    fixture_files,
    load_cases,
    run_case,
    submission_for,
)
from gateway.policy.loader import PolicySet, load_policies
from gateway.policy.registry import Registry, default_registry
from gateway.policy.rules.language import detect
from gateway.settings import parse_duration


@click.group()
def policies() -> None:
    """Check, test and explain policy files."""


def _load(
    directory: Path | None, config_path: Path | None, registry: Registry
) -> tuple[Path, PolicySet]:
    if directory is None:
        directory = load_settings(config_path).policies.dir
    try:
        return directory, load_policies(directory, registry)
    except PolicyError as exc:
        problems = plural(len(exc.problems), "problem")
        fail(*(str(p) for p in exc.problems), f"error: {directory}: {problems}; nothing loaded")
    raise AssertionError  # pragma: no cover - fail() exits


DIRECTORY = click.argument(
    "directory", required=False, type=click.Path(path_type=Path, file_okay=False)
)


@policies.command("check")
@DIRECTORY
@config_option
def policies_check(directory: Path | None, config_path: Path | None) -> None:
    """Validate DIRECTORY (default: policies.dir) as the gateway would load it."""
    directory, loaded = _load(directory, config_path, default_registry())
    files = ", ".join(loaded.files) or f"no *.yaml files in {directory}"
    rules = plural(len(loaded.rules), "rule")
    click.echo(f"policies OK: {rules} from {files} (version {loaded.version})")


def _pair(pair: tuple[str, str]) -> str:
    return "/".join(pair)


def _report(outcome: Outcome) -> list[str]:
    if outcome.passed:
        return [f"  ok    {outcome.name}"]
    lines = [f"  FAIL  {outcome.name}  ({outcome.where})"]
    lines += [f"        missing:    {_pair(p)}" for p in sorted(outcome.expected - outcome.got)]
    lines += [
        f"        unexpected: {_pair(f.signature)}: {f.message}"
        for f in outcome.findings
        if f.signature not in outcome.expected
    ]
    return lines


@policies.command("test")
@DIRECTORY
@config_option
def policies_test(directory: Path | None, config_path: Path | None) -> None:
    """Run the policy tests in DIRECTORY/tests/*.yaml against DIRECTORY's policies."""
    registry = default_registry()
    directory, loaded = _load(directory, config_path, registry)
    files = fixture_files(directory)
    if not files:
        fail(f"error: no policy tests in {directory / 'tests'} (*.yaml)")
    failed = total = 0
    for path in files:
        click.echo(f"{path}:")
        try:
            cases = list(load_cases(path))
        except ConfigError as exc:
            fail(str(exc), f"error: {path} is not a valid policy test file")
        for case, where in cases:
            outcome = run_case(loaded, case, where, path.parent, registry=registry)
            total += 1
            failed += not outcome.passed
            click.echo("\n".join(_report(outcome)))
    summary = f"{plural(total, 'test')}, {failed} failed (policy version {loaded.version})"
    if failed:
        fail(summary)
    click.echo(summary)


def _day(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC).replace(
            hour=12
        )
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DD", param_hint="--date") from None


@policies.command("explain")
@click.argument("message", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--category", help="Declared category (default: X-Campaign-Category).")
@click.option("--locale", help="Declared locale (default: X-Campaign-Locale).")
@click.option("--size", type=int, help="Declared size (default: X-Declared-Size).")
@click.option("--recipients", type=int, default=1, show_default=True, help="Received so far.")
@click.option("--to", "to", multiple=True, help="This message's recipients (repeatable).")
@click.option("--signed", multiple=True, help="An identity that signed off (repeatable).")
@click.option("--date", "day", help="Send date, YYYY-MM-DD (default: today).")
@config_option
def policies_explain(  # noqa: PLR0917 - click passes one argument per option
    message: Path,
    directory: Path | None,
    category: str | None,
    locale: str | None,
    size: int | None,
    recipients: int,
    to: tuple[str, ...],
    signed: tuple[str, ...],
    day: str | None,
    config_path: Path | None,
) -> None:
    """Print what every rule says about MESSAGE (an .eml file) in a campaign you describe."""
    registry = default_registry()
    directory, loaded = _load(directory, config_path, registry)
    content = message.read_bytes()
    spec = CampaignSpec(
        category=category,
        locale=locale,
        size=size,
        received=recipients,
        recipients=list(to) or ["reader@example.org"],
        signoffs=list(signed),
        date=_day(day),
    )
    document = decode(content)
    found = detect(document.body)
    submission = submission_for(content, spec)
    declaration = submission.campaign.declaration
    click.echo(f"message:  {message}")
    senders = ", ".join(f"{header}: {address}" for header, address in document.senders)
    click.echo(f"  subject {document.subject!r}; from name {document.from_name!r}; {senders}")
    click.echo(
        f"  text {len(document.text)} chars, html text {len(document.html)} chars, "
        f"code {len(document.code)} chars, {len(document.links)} links; language "
        f"{found.language} (probability {found.probability:.2f})"
    )
    for problem in document.problems:
        click.echo(f"  cannot decode: {problem}")
    click.echo(
        f"campaign: category {declaration.category}, locale {declaration.locale}, size "
        f"{declaration.size}, {recipients} recipients so far, date {spec.date:%Y-%m-%d}"
    )
    click.echo(f"policies: {directory} (version {loaded.version})")
    findings = evaluate(loaded, content, spec, registry=registry)
    engine = Engine(loaded, registry=registry)
    report = engine.analyse(submission)
    for built_in in ("declaration", "content"):
        for finding in (f for f in findings if f.rule == built_in):
            click.echo(
                f"  {built_in:<22} {'(built in)':<22} HOLD  {finding.kind}: {finding.message}"
            )
    campaign = campaign_for(submission, spec)
    for active in loaded.rules:
        mine = [f for f in findings if f.rule == active.id]
        label = f"  {active.id:<22} {active.rule.kind:<22}"
        if not active.rule.when.selects(campaign):
            click.echo(
                f"{label} not selected (when: {active.rule.when.model_dump(exclude_none=True)})"
            )
            continue
        verdict = ("HOLD " if active.mode == "enforce" else "shadow") if mine else "pass "
        if not mine:
            hits = report.scans.get(active.id)
            seen = ", ".join(sorted({h.fragment for h in hits.hits}))[:100] if hits else ""
            click.echo((f"{label} {verdict}" + (f" (saw: {seen})" if seen else "")).rstrip())
        for finding in mine:
            click.echo(f"{label} {verdict} {finding.kind}: {finding.message}")


def _since(value: str) -> float:
    seconds = parse_duration(value)
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
        raise click.BadParameter("use a duration such as 24h or 7d", param_hint="--since")
    return float(seconds)


def _replay_table(result: Replay) -> list[str]:
    """Per rule: campaigns with a finding now and with the candidate; then the holds."""
    rules = sorted((set(result.now) | set(result.candidate)) - {DECLARATION_RULE})
    rows: list[list[object]] = []
    for rule in rules:
        now, then = result.now.get(rule, set()), result.candidate.get(rule, set())
        mode = result.modes.get(rule, "-")
        rows.append([rule, mode, len(now), len(then), len(then - now), len(now - then)])
    held, then = result.held_now, result.held_candidate
    rows.append(["(held)", "-", len(held), len(then), len(then - held), len(held - then)])
    return table(("RULE", "MODE", "NOW", "CANDIDATE", "NEW", "GONE"), rows).splitlines()


@policies.command("replay")
@DIRECTORY
@click.option(
    "--since", default="7d", show_default=True, help="How far back: a duration such as 24h."
)
@config_option
def policies_replay(directory: Path | None, since: str, config_path: Path | None) -> None:
    """Replay the mail the spool retained through the policies in DIRECTORY (a candidate).

    Each message is admitted again, with the candidate rules, into a scratch spool: the
    table compares, per rule, the campaigns with a finding now and with the candidate,
    and the campaigns held. Nothing is sent; the spool is only read.
    """
    registry = default_registry()
    directory, candidate = _load(directory, config_path, registry)
    settings = load_settings(config_path)
    start = time.time() - _since(since)
    done = [0]

    def progress(count: int) -> None:
        done[0] += count
        click.echo(f"\rreplayed {done[0]} messages…", nl=False, err=True)

    result = with_spool(
        config_path,
        lambda spool: replay(spool, candidate, registry, settings, since=start, progress=progress),
        create=False,
        log_level="error",  # the replayed decisions are not the gateway's: no holds logged
    )
    if done[0]:
        click.echo("", err=True)
    when = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    click.echo(
        f"replayed {plural(result.messages, 'message')} of {plural(len(result.campaigns), 'campaign')}"
        f" received since {when} with {directory} (version {candidate.version})"
    )
    click.echo("\n".join(_replay_table(result)))
