"""The typed, frozen settings tree, loaded once from YAML and the environment.

Every field has a default and a one-line description; `docs/settings.md` is generated
from this module (`sendbrake config docs`), so the reference cannot drift. This is the
only module that reads `os.environ` (STYLE.md rule 7). It must not import any other
part of the gateway but `errors`.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from gateway.errors import ConfigError
from gateway.yamlfile import read_yaml

ENV_PREFIX = "SENDBRAKE_"
CHECK_BUDGET = 0.05  # seconds of CPU; campaign-level checks are counter and index look-ups
QUEUE_WAIT = 60.0  # seconds a message may wait for a free content analyser before it is held
SCAN_BUDGET = 0.5  # seconds of CPU; one content scanner on one message (100 KB takes ~1 ms)
CONFIG_ENV = "SENDBRAKE_CONFIG"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> object:
    """Turn ``250ms``, ``30s``, ``5m``, ``1h``, ``7d`` or a number into seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("expected a duration such as 30s, 5m, 1h or 7d")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


def split_hostport(value: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port`` into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:2525 or [::1]:2525")
    return host.strip("[]"), int(port)


def _check_hostport(value: str) -> str:
    split_hostport(value)
    return value


def _check_network(value: str) -> str:
    return str(ipaddress.ip_network(value, strict=False))


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
HostPort = Annotated[str, AfterValidator(_check_hostport)]
Network = Annotated[str, AfterValidator(_check_network)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _off_is_false(value: object) -> object:
    return "off" if value is False else value


class SmtpTlsSettings(_Section):
    """STARTTLS on the SMTP ingress: the certificate it presents."""

    cert: str = Field(
        "",
        description="PEM certificate chain; with key, STARTTLS is offered (dev: sendbrake tls self-signed).",
    )
    key: str = Field("", description="PEM private key of the certificate.")

    @property
    def enabled(self) -> bool:
        """Whether a certificate is configured."""
        return bool(self.cert and self.key)


class SmtpSettings(_Section):
    """SMTP ingress: where the marketing platform connects."""

    listen: HostPort = Field(
        "127.0.0.1:2525", description="Address the SMTP ingress binds; port 0 picks a free port."
    )
    hostname: str = Field(
        "", description="Name in the greeting and added headers; empty means the machine's FQDN."
    )
    max_message_size: int = Field(
        10 * 1024 * 1024,
        gt=0,
        description="Largest message accepted, in bytes (advertised as SIZE; larger gets 552).",
    )
    max_recipients: int = Field(
        1000, gt=0, description="Most recipients in one transaction; more get 452 4.5.3."
    )
    max_header_size: int = Field(
        100 * 1024,
        gt=0,
        description="Largest header block in bytes (Postfix's header_size_limit); more get 552.",
    )
    allowed_networks: tuple[Network, ...] = Field(
        ("127.0.0.0/8", "::1/128"),
        description="Client networks allowed to relay; others get 554 5.7.1.",
    )
    timeout: Duration = Field(
        60.0,
        gt=0,
        description="Time a client has for each command, idle time included; then 421 4.4.2.",
    )
    data_timeout: Duration = Field(
        120.0,
        gt=0,
        description="Time a client has to send a message, from 354 to the final dot; then 421.",
    )
    max_sessions: int = Field(
        500, gt=0, description="Concurrent SMTP sessions; more are answered 421 4.7.0 and closed."
    )
    max_sessions_per_client: int = Field(
        50,
        gt=0,
        description=(
            "Concurrent sessions from one address outside smtp.allowed_networks (which are"
            " exempt, as Postfix's mynetworks); more get 421 4.7.0."
        ),
    )
    processes: Annotated[int, Field(ge=0, le=64)] | Literal["auto"] = Field(
        "auto",
        description=(
            "SMTP ingress processes: N child processes talk SMTP and TLS for the sessions the"
            " gateway accepts (and counts against the limits) and hand each message back to"
            " it to admit; 0 talks SMTP in the gateway process; `auto` one per CPU the"
            " process may use (as `policies.content_processes`), 0 on one."
        ),
    )
    junk_command_limit: int = Field(
        100,
        gt=0,
        description=(
            "Commands that move no mail (NOOP, RSET, VRFY, HELP, EXPN) a session may send"
            " since its last accepted message, as Postfix's smtpd_junk_command_limit; the"
            " next one gets 421 4.7.0 and the session is closed."
        ),
    )
    bare_newlines: Literal["reject", "accept"] = Field(
        "reject",
        description=(
            "DATA with a bare CR or LF (not CRLF): reject with 550 5.5.2 (smuggling-safe), or"
            " accept and relay it with every line end made CRLF."
        ),
    )
    tls: SmtpTlsSettings = Field(
        SmtpTlsSettings(),
        description="STARTTLS: the certificate (cert) and key the listener presents.",
    )
    auth: Annotated[
        Literal["auto", "off", "optional", "required"],
        BeforeValidator(_off_is_false),  # YAML (and so the environment) reads `off` as false
    ] = Field(
        "auto",
        description=(
            "SMTP AUTH (offered only after STARTTLS): required, optional (users or allowed"
            " networks), off; auto is required beyond loopback and optional on it."
        ),
    )
    auth_max_failures: int = Field(
        5, gt=0, description="Failed AUTH attempts per client address before it must wait."
    )
    auth_failure_window: Duration = Field(
        300.0, description="How long failed AUTH attempts count against a client address."
    )

    def ingress_processes(self) -> int:
        """How many SMTP ingress processes to run, `auto` resolved for this machine."""
        if self.processes == "auto":
            cpus = _usable_cpus()
            return cpus if cpus > 1 else 0
        return self.processes

    def auth_mode(self) -> Literal["off", "optional", "required"]:
        """Return the AUTH mode in force: `auth`, auto resolved by where the listener binds."""
        if self.auth != "auto":
            return self.auth
        return "optional" if is_loopback(split_hostport(self.listen)[0]) else "required"


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, or 0.0.0.0: beyond loopback


class HttpSettings(_Section):
    """The HTTP surface: health, metrics and (later) the ops API."""

    listen: HostPort = Field(
        "127.0.0.1:8080", description="Address the HTTP server binds; port 0 picks a free port."
    )
    max_body_size: int = Field(
        1024 * 1024, gt=0, description="Largest JSON request body, in bytes."
    )
    header_timeout: Duration = Field(
        15.0,
        gt=0,
        description="A connection whose request headers have not arrived within this, or that"
        " stays idle between requests as long, is closed.",
    )
    body_timeout: Duration = Field(
        30.0,
        gt=0,
        description="Longest time to receive a JSON request body, or to wait for the next"
        " piece of a segment upload (408 past it).",
    )
    max_line_size: int = Field(
        8190, ge=256, description="Longest request line (method, path, query), in bytes."
    )
    max_field_size: int = Field(8190, ge=256, description="Longest header field, in bytes.")
    max_headers: int = Field(64, gt=0, description="Most header fields of one request.")


def _check_optional_hostport(value: str) -> str:
    return _check_hostport(value) if value else value


CAMPAIGN_SOURCE = r"^(header:[!-9;-~]+|custom_arg:[^\s]+|batch_id|category)$"


class EspSettings(_Section):
    """The HTTP send API in SendGrid's v3 shape (`POST /v3/mail/send`, docs/http-sending.md)."""

    listen: Annotated[str, AfterValidator(_check_optional_hostport)] = Field(
        "",
        description="Address the HTTP send API binds (e.g. 127.0.0.1:8025); empty: off.",
    )
    max_body_size: int = Field(
        30 * 1024 * 1024,
        gt=0,
        description="Largest request body in bytes, attachments included (SendGrid's 30 MB).",
    )
    max_personalizations: int = Field(
        1000, gt=0, description="Most personalizations in one request (SendGrid allows 1,000)."
    )
    resend_window: Duration = Field(
        3600.0,
        description=(
            "A request with the same API key and the same bytes as one accepted within this"
            " is a client's retry (its 202 was lost): answered 202 again, stored once; 0: off."
        ),
    )
    max_recipients: int = Field(
        1000,
        gt=0,
        description="Most recipients (to, cc and bcc together) in one request, as SendGrid's.",
    )
    campaign_from: tuple[Annotated[str, Field(pattern=CAMPAIGN_SOURCE)], ...] = Field(
        ("header:X-Campaign-ID", "custom_arg:campaign_id", "batch_id", "category"),
        description=(
            "Where a request names its campaign, first present wins: header:NAME (the"
            " request's headers), custom_arg:NAME, batch_id, category (the first one)."
        ),
    )
    header_timeout: Duration = Field(
        15.0,
        gt=0,
        description="A connection whose request headers have not arrived within this, or that"
        " stays idle between requests as long, is closed.",
    )
    body_timeout: Duration = Field(
        60.0, gt=0, description="Longest time to receive a request body (408 past it)."
    )
    max_line_size: int = Field(
        8190, ge=256, description="Longest request line (method, path, query), in bytes."
    )
    max_field_size: int = Field(8190, ge=256, description="Longest header field, in bytes.")
    max_headers: int = Field(64, gt=0, description="Most header fields of one request.")

    @property
    def enabled(self) -> bool:
        """Whether the send API listens at all."""
        return bool(self.listen)


class SpoolSettings(_Section):
    """The durable spool that holds every accepted message until it is settled."""

    url: str = Field(
        "sqlite:///var/spool.db",
        description="sqlite:///relative, sqlite:////absolute or postgresql://user@host/db.",
    )
    commit_delay: Duration = Field(
        0.0, description="Extra time the writer waits to gather more commits into one fsync."
    )
    max_batch: int = Field(256, gt=0, description="Most writes grouped into one commit.")
    busy_timeout: Duration = Field(
        5.0, description="How long a write waits for a lock another process holds on the spool."
    )
    writers: int = Field(
        1,
        gt=0,
        le=64,
        description=(
            "PostgreSQL: connections that write, each grouping concurrent commits into one"
            " (more contend for hot campaign rows: docs/scaling.md)."
        ),
    )
    readers: int = Field(
        2, gt=0, le=64, description="PostgreSQL: connections that serve reads beside the writers."
    )
    connect_timeout: Duration = Field(
        5.0, description="PostgreSQL: how long opening a connection may take before it fails."
    )
    retention: Duration = Field(
        7 * 86400.0,
        description=(
            "How long the body of a message whose every recipient is done stays in the spool"
            " (for inspection and `sendbrake policies replay`); 0 keeps bodies for ever."
            " Held, queued and deferred mail is never removed."
        ),
    )


class CampaignSettings(_Section):
    """How mail is grouped into campaigns (DESIGN.md §2)."""

    key_headers: tuple[str, ...] = Field(
        ("X-Campaign-ID", "X-Mailgun-Campaign-Id"),
        description="Headers naming the campaign, first present wins.",
    )
    implicit_window: Duration = Field(
        3600.0,
        description="Mail with one sender and subject within this time of the first message is one campaign.",
    )
    strip_declaration_headers: bool = Field(
        default=True,
        description="Remove X-Declared-Size, X-Campaign-Category and X-Campaign-Locale before relay.",
    )


class SegmentSettings(_Section):
    """Audience segments: how addresses compare, how large an upload may be."""

    casefold_local_part: bool = Field(
        default=True,
        description="Compare the part before @ case-insensitively too (domains always are).",
    )
    max_upload_size: int = Field(
        4 * 1024**3, gt=0, description="Largest segment upload over HTTP, in bytes."
    )


class PolicySettings(_Section):
    """Where the operators' policy files live."""

    dir: Path = Field(Path("policies"), description="Folder whose *.yaml policy files are merged.")
    content_timeout: Duration = Field(
        5.0,
        gt=0,
        description="Longest a message's content analysis may take; past it, its campaign is held.",
    )
    content_workers: int = Field(
        2,
        gt=0,
        description=(
            "Threads that analyse message content off the event loop, when"
            " `content_processes` is 0."
        ),
    )
    content_processes: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description=(
            "Child processes that analyse message content, each on a CPU of its own, one"
            " message at a time (a stuck one is killed and replaced); 0 analyses on"
            " `content_workers` threads of the gateway process; `auto` one per CPU the"
            " process may use (its affinity, capped by its cgroup's CPU quota), 0 on one."
        ),
    )
    check_budget: Duration = Field(
        CHECK_BUDGET,
        gt=0,
        description=(
            "CPU time one campaign-level check may use on one message before it holds its"
            " campaign as broken; time spent waiting for a busy CPU does not count."
        ),
    )
    scan_budget: Duration = Field(
        SCAN_BUDGET,
        gt=0,
        description=(
            "CPU time one content rule may use reading one message (tried twice) before it"
            " holds its campaign as broken; a hang is caught by `content_timeout`."
        ),
    )

    def analysis_processes(self) -> int:
        """How many analysis processes to run, `auto` resolved for this machine."""
        if self.content_processes == "auto":
            cpus = _usable_cpus()
            return cpus if cpus > 1 else 0
        return self.content_processes


class UpstreamSettings(_Section):
    """The provider sendbrake relays to."""

    kind: Literal["capture", "smtp", "sendgrid"] = Field(
        "capture",
        description=(
            "capture writes .eml files to outbox; smtp relays to host:port; sendgrid calls"
            " SendGrid's v3 mail send API at base_url."
        ),
    )
    outbox: Path = Field(
        Path("var/outbox"), description="Folder the capture upstream writes relayed mail to."
    )
    host: str = Field("127.0.0.1", description="SMTP upstream host.")
    port: int = Field(25, ge=0, le=65535, description="SMTP upstream port.")
    tls: Literal["none", "starttls", "implicit"] = Field(
        "none", description="TLS towards the upstream."
    )
    verify_tls: bool = Field(
        default=True, description="Verify the upstream's certificate and host name."
    )
    ca_file: Path | None = Field(None, description="Extra CA bundle to trust for the upstream.")
    username: str = Field("", description="AUTH user towards the upstream; empty means no AUTH.")
    password: SecretStr = Field(SecretStr(""), description="AUTH password towards the upstream.")
    helo_name: str = Field("", description="Name sent in EHLO; empty means the machine's FQDN.")
    connect_timeout: Duration = Field(
        10.0, description="Time allowed to connect (smtp: and read the greeting)."
    )
    command_timeout: Duration = Field(
        60.0, description="Time allowed for each SMTP command but the end of DATA."
    )
    data_timeout: Duration = Field(
        600.0,
        description=(
            "Time allowed for the reply to the end of DATA (RFC 5321 4.5.3.2.6: 10 minutes):"
            " the provider commits then, and a reply that comes too late means a retry"
            " that may deliver twice."
        ),
    )
    pool_size: int = Field(
        16,
        gt=0,
        description=(
            "Most open connections to the upstream, reused between messages (Postfix's default"
            " per destination is 20)."
        ),
    )
    base_url: str = Field(
        "https://api.sendgrid.com",
        pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description="sendgrid: the API's base URL; requests go to base_url/v3/mail/send.",
    )
    api_key: SecretStr = Field(
        SecretStr(""),
        description="sendgrid: the provider's API key (needs Mail Send); never logged or shown.",
    )
    request_timeout: Duration = Field(
        60.0,
        description=(
            "sendgrid: time allowed for one call's answer; one that comes too late means a"
            " retry that may deliver twice."
        ),
    )
    personalizations_per_call: int = Field(
        1000,
        gt=0,
        le=1000,
        description="sendgrid: most recipients (one personalization each) in one call.",
    )
    process: Literal["auto", "separate", "gateway"] = Field(
        "auto",
        description=(
            "Where the conversations with the upstream run: `separate` in a child process with"
            " a CPU of its own, `gateway` inside the gateway process, `auto` separate when the"
            " process may run on more than one CPU."
        ),
    )

    @model_validator(mode="after")
    def _sendgrid_needs_a_key(self) -> UpstreamSettings:
        if self.kind == "sendgrid" and not self.api_key.get_secret_value():
            raise ValueError("upstream.api_key is required when upstream.kind is sendgrid")
        return self

    def separate_process(self) -> bool:
        """Tell whether deliveries run in a child process, `auto` resolved for this machine."""
        if self.process == "auto":
            return _usable_cpus() > 1
        return self.process == "separate"


CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def _usable_cpus() -> int:
    """CPUs this process may use: its affinity, capped by its cgroup's CPU quota.

    A container limited to 2 CPUs on a 32-CPU node sees all 32 in its affinity; its
    quota says 2, and `auto` must not start a child process per CPU it cannot use.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    try:
        quota, period = CPU_MAX.read_text().split()[:2]
    except (OSError, ValueError):
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, math.ceil(int(quota) / int(period))))


class RelaySettings(_Section):
    """Relay workers that move queued recipients to the upstream."""

    concurrency: int = Field(
        128,
        gt=0,
        description=(
            "Most messages claimed and in delivery at once (beyond `upstream.pool_size` they"
            " wait for a connection); more in flight means larger, cheaper claims and settles."
        ),
    )
    batch_size: int = Field(
        128, gt=0, description="Most messages claimed from the spool in one go."
    )
    lease: Duration = Field(
        300.0,
        description=(
            "How long a claim stays exclusive; renewed while its delivery runs, so only a"
            " delivery that died is retried by another worker once it runs out."
        ),
    )
    retry_base: Duration = Field(
        60.0, description="First retry delay after a transient failure; doubles per attempt."
    )
    retry_max_delay: Duration = Field(3600.0, description="Longest delay between two attempts.")
    retry_jitter: float = Field(
        0.2, ge=0, le=1, description="Random spread added to each delay, as a fraction of it."
    )
    max_age: Duration = Field(
        5 * 86400.0, description="A recipient still deferred this long after receipt fails."
    )
    poll_interval: Duration = Field(
        1.0, description="Longest sleep between looks at the spool when nothing wakes the workers."
    )
    drain_timeout: Duration = Field(
        30.0, description="On shutdown, time in-flight deliveries get to finish."
    )


class TokenSettings(_Section):
    """An API token declared in the config file, by the SHA-256 of its secret."""

    name: str = Field(description="Who uses the token; shown in the audit log.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the token (`sendbrake tokens hash`)."
    )
    roles: tuple[Literal["viewer", "operator", "admin", "submitter"], ...] = Field(
        description="What the token may do."
    )
    identity: str | None = Field(None, description="Protected identity the token signs off for.")


class OpsSettings(_Section):
    """The ops API: tokens, release rules, paging."""

    tokens: tuple[TokenSettings, ...] = Field(
        (), description="API tokens (hashes) besides those added with `sendbrake tokens add`."
    )
    two_person_release_above: int = Field(
        10000,
        ge=0,
        description="Releasing more held recipients than this needs two different operators.",
    )
    canary_observe: Duration = Field(
        3600.0,
        gt=0,
        description=(
            "How long a canary release's slice must get quiet feedback before the rest goes,"
            " when the release does not say (`observe`)."
        ),
    )
    canary_poll_interval: Duration = Field(
        5.0,
        gt=0,
        description="How often each gateway looks at canary releases under way.",
    )
    page_size: int = Field(
        50, gt=0, le=1000, description="Items per page when a list request gives no limit."
    )
    auth_max_failures: int = Field(
        20,
        gt=0,
        description="Failed token checks per client address within the window before 429.",
    )
    auth_failure_window: Duration = Field(
        60.0, gt=0, description="How long failed token checks count against a client address."
    )
    trusted_proxies: tuple[Network, ...] = Field(
        (),
        description="Proxies whose X-Forwarded-For names the client, for the per-address"
        " failed-token limit and the audit log; empty: the TCP peer is the client.",
    )
    audit_refusals_per_minute: int = Field(
        30,
        gt=0,
        description="Refused calls audited one by one per client address per minute; then one"
        " summary row, and the count left out is recorded on the next row.",
    )


class ConsoleSettings(_Section):
    """The reviewers' web page under /console/ on the ops listener (docs/console.md)."""

    session_lifetime: Duration = Field(
        8 * 3600.0,
        gt=0,
        description="A console sign-in ends this long after it began, however busy it is.",
    )
    idle_timeout: Duration = Field(
        30 * 60.0,
        gt=0,
        description="A console sign-in ends after this long without a page being asked for.",
    )
    max_sessions: int = Field(
        1000,
        gt=0,
        description="Console sign-ins kept at once (in this process); past it the oldest ends.",
    )
    refresh_interval: Duration = Field(
        15.0,
        ge=0,
        description="How often the list of campaigns refreshes itself in place; 0: never.",
    )


class RuntimeSettings(_Section):
    """The process itself."""

    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="uvloop (faster sockets) or the standard library's asyncio loop."
    )


def _check_forward_url(value: str) -> str:
    if value and not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("expected an http:// or https:// URL, or empty for none")
    return value


class SendgridWebhookSettings(_Section):
    """SendGrid's Signed Event Webhook, received on the ops listener (docs/feedback.md)."""

    public_key: str = Field(
        "",
        description=(
            "Verification key of the Signed Event Webhook (base64 DER, as SendGrid shows it);"
            " empty: POST /webhooks/sendgrid answers 404."
        ),
    )
    tolerance: Duration = Field(
        300.0, description="Most a signature's timestamp may differ from the gateway's clock."
    )
    max_body_size: int = Field(
        8 * 1024 * 1024, gt=0, description="Largest event batch accepted, in bytes (413 past it)."
    )
    forward_url: Annotated[str, AfterValidator(_check_forward_url)] = Field(
        "", description="The platform's own webhook URL every event is forwarded to; empty: none."
    )
    forward_token: SecretStr = Field(
        SecretStr(""),
        description="Sent as `Authorization: Bearer …` with each forward; empty: no header.",
    )
    timeout: Duration = Field(10.0, description="Time limit of one forward request.")
    retry_base: Duration = Field(
        30.0, description="First delay after a failed forward; doubles per attempt."
    )
    retry_max_delay: Duration = Field(1800.0, description="Longest delay between two forwards.")
    retry_jitter: float = Field(
        0.2, ge=0, le=1, description="Random spread added to each delay, as a fraction of it."
    )
    max_age: Duration = Field(
        3 * 86400.0,
        description="A batch not forwarded this long after receipt becomes a dead letter.",
    )
    lease: Duration = Field(
        60.0, description="How long one replica owns a batch it is forwarding (over timeout)."
    )
    poll_interval: Duration = Field(
        5.0, description="Longest wait before looking for due batches again."
    )

    @property
    def enabled(self) -> bool:
        """Whether the webhook route is served."""
        return bool(self.public_key)


class WebhookSettings(_Section):
    """Provider event webhooks."""

    sendgrid: SendgridWebhookSettings = Field(
        default_factory=SendgridWebhookSettings, description="SendGrid's event webhook."
    )


class FeedbackSettings(_Section):
    """Bounce and complaint reports arriving over SMTP (DSNs, ARF)."""

    dsn_recipients: tuple[str, ...] = Field(
        (),
        description=(
            "Return-path addresses whose mail is a report (DSN, ARF), counted and never"
            " relayed, e.g. [bounces@mail.example.com]."
        ),
    )


class LogSettings(_Section):
    """Structured logging."""

    format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console in a terminal, JSON otherwise."
    )
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level written."
    )


class Settings(_Section):
    """The whole configuration of one gateway process."""

    smtp: SmtpSettings = Field(default_factory=SmtpSettings, description="SMTP ingress.")
    http: HttpSettings = Field(default_factory=HttpSettings, description="HTTP surface.")
    esp: EspSettings = Field(default_factory=EspSettings, description="HTTP send API.")
    spool: SpoolSettings = Field(default_factory=SpoolSettings, description="Durable spool.")
    campaigns: CampaignSettings = Field(
        default_factory=CampaignSettings, description="Campaign grouping."
    )
    policies: PolicySettings = Field(default_factory=PolicySettings, description="Policy files.")
    upstream: UpstreamSettings = Field(
        default_factory=UpstreamSettings, description="Upstream provider."
    )
    relay: RelaySettings = Field(default_factory=RelaySettings, description="Relay workers.")
    ops: OpsSettings = Field(default_factory=OpsSettings, description="Ops API.")
    console: ConsoleSettings = Field(
        default_factory=ConsoleSettings, description="Reviewers' web console."
    )
    segments: SegmentSettings = Field(default_factory=SegmentSettings, description="Segments.")
    webhooks: WebhookSettings = Field(
        default_factory=WebhookSettings, description="Provider event webhooks."
    )
    feedback: FeedbackSettings = Field(
        default_factory=FeedbackSettings, description="Reports over SMTP."
    )
    log: LogSettings = Field(default_factory=LogSettings, description="Logging.")
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings, description="Process.")


def load(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from an optional YAML file and ``SENDBRAKE_*`` overrides.

    `path` defaults to ``$SENDBRAKE_CONFIG``; with neither, only defaults and the
    environment apply. Raises `ConfigError` naming file and line, or the variable.
    """
    env = os.environ if environ is None else environ
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    raw: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    if path is not None:
        raw, lines = _read_yaml(path)
    origins: dict[tuple[str, ...], str] = {}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and "__" in name:
            keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
            _set_path(raw, keys, _env_value(value))
            origins[keys] = f"environment {name}"
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join(loc)
        where = _origin(loc, origins, lines, path)
        raise ConfigError(where, key, error["msg"]) from None


def _origin(
    loc: tuple[str, ...],
    origins: Mapping[tuple[str, ...], str],
    lines: Mapping[tuple[str, ...], int],
    path: Path | None,
) -> str:
    for depth in range(len(loc), 0, -1):
        prefix = loc[:depth]
        if prefix in origins:
            return origins[prefix]
        if prefix in lines:
            return f"{path}:{lines[prefix]}"
    return str(path) if path is not None else "defaults"


def _env_value(value: str) -> Any:
    """Read an override as a YAML scalar or flow list, so ``[a, b]`` and ``30`` work."""
    try:
        return yaml.safe_load(value) if value.strip() else value
    except yaml.YAMLError:
        return value


def _set_path(target: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    for key in keys[:-1]:
        child = target.get(key)
        if not isinstance(child, dict):
            child = target[key] = {}
        target = child
    target[keys[-1]] = value


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Load a YAML mapping and remember the line of every key path."""
    doc = read_yaml(path)
    if doc.data is None:
        return {}, {}
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{path}:1", "", "the top level must be a mapping of sections")
    return doc.data, doc.lines


def env_name(path: tuple[str, ...]) -> str:
    """Return the environment variable that overrides a key path."""
    return ENV_PREFIX + "__".join(part.upper() for part in path)


def effective(settings: Settings) -> dict[str, Any]:
    """Return the settings as plain data with secrets masked, for `config show`."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    return data
