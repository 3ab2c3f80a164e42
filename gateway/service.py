"""The gateway process: wires settings, spool, stages and listeners, and shuts down in order.

This is the only module that knows every part. Long-lived tasks run inside one TaskGroup.
Shutdown order: close the listeners (no new mail), stop the relay from claiming and let
in-flight deliveries finish within `relay.drain_timeout`, cancel the rest, give their
leases back, then stop the SMTP ingress processes (sessions still open end there, as they
would with SMTP in this process), the upstream, the analysis processes and the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from gateway.admission.admitter import Admitter
from gateway.audience.loader import SegmentLoader
from gateway.errors import ConfigError, SpoolError
from gateway.failures import FailedAttempts
from gateway.feedback.forwarder import Forwarder
from gateway.feedback.intake import Intake, with_reports
from gateway.feedback.sendgrid import Verifier, load_public_key
from gateway.ingress.auth import SmtpAuthenticator
from gateway.ingress.esp import ApiKey, EspIngress, start_esp
from gateway.ingress.smtp import check_exposure, start_smtp
from gateway.ingress.smtp_process import SmtpProcesses
from gateway.metrics import Metrics
from gateway.model import Campaign, Throttle
from gateway.ops.api import OpsApi
from gateway.ops.auth import Authenticator, Gate
from gateway.ops.console.app import Console
from gateway.ops.http import create_app
from gateway.ops.policy_api import PolicyApi
from gateway.ops.preflight_api import PreflightApi
from gateway.ops.segments_api import SegmentsApi
from gateway.ops.throttle import ClientAddress
from gateway.ops.webhooks_api import WebhooksApi
from gateway.policy.analysis_process import ProcessAnalysers
from gateway.policy.engine import Engine
from gateway.policy.loader import PolicySet, load_policies
from gateway.policy.registry import default_registry
from gateway.relay.upstream import Upstream, create_upstream
from gateway.relay.upstream_process import ProcessUpstream
from gateway.relay.worker import Relay
from gateway.review.breaker import Breaker
from gateway.review.watcher import CanaryWatcher
from gateway.settings import Settings, split_hostport
from gateway.spool import Spool, create_spool, redacted

log = structlog.get_logger(__name__)

SEEN_MARGIN = 86400.0  # event IDs are remembered a day past webhooks.sendgrid.max_age
MAINTENANCE_INTERVAL = 60.0  # seconds between purges of replaced segments and old counts
RETIRE_CHUNK, RETIRE_CHUNKS = 500, 20  # bodies retired per transaction, transactions a pass


@dataclass(frozen=True)
class Addresses:
    """Where the listeners actually bound (ports may have been 0)."""

    smtp: tuple[str, int]
    http: tuple[str, int]
    esp: tuple[str, int] | None = None  # the HTTP send API's, when esp.listen is set


class Gateway:
    """One sendbrake process: build with settings, then `run` until `stop`."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics,
        spool: Spool | None = None,
        upstream: Upstream | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self.metrics = metrics
        self.spool = spool or create_spool(settings.spool)
        self.upstream = upstream or (
            ProcessUpstream(settings)
            if settings.upstream.separate_process()
            else create_upstream(settings.upstream)
        )
        self.relay = Relay(
            self.spool,
            self.upstream,
            settings.relay,
            self.metrics,
            clock=clock,
            throttles=self._throttles,
        )
        self.registry = default_registry()  # the rule kinds policy files may name
        self.engine = self._engine(load_policies(settings.policies.dir, self.registry))
        self.metrics.declare_policies(self.engine.policies.version, self.engine.rule_modes())
        self.metrics.declare_throttles(self.engine.throttle_rules())
        self.admitter = Admitter(
            self.spool,
            settings.campaigns,
            hostname=settings.smtp.hostname or socket.getfqdn(),
            decider=self.engine,
            casefold_local=settings.segments.casefold_local_part,
            metrics=self.metrics,
            clock=clock,
            on_admitted=lambda _admission: self.relay.wake(),
            content_timeout=settings.policies.content_timeout,
            content_workers=settings.policies.content_workers,
            analysers=self._analysers(settings),
        )
        self.loader = SegmentLoader(
            self.spool, casefold_local=settings.segments.casefold_local_part, clock=clock
        )
        authenticator = Authenticator(self.spool, settings.ops.tokens)
        gate = Gate(authenticator, self.spool, clock, limits=settings.ops)
        self.esp = self._esp(authenticator)
        hook = settings.webhooks.sendgrid
        self.forwarder = Forwarder(self.spool, hook, self.metrics, clock=clock)
        breaker = Breaker(self.spool, lambda: self.engine.judge_feedback, self.metrics, clock=clock)
        self.intake = Intake(
            self.spool,
            self.metrics,
            forward=bool(hook.forward_url),
            casefold_local=settings.segments.casefold_local_part,
            clock=clock,
            on_queued=self.forwarder.wake,
            on_counted=breaker.judge,
        )
        webhooks = WebhooksApi(
            self.spool,
            gate,
            self.intake,
            self._verifier(),
            hook,
            settings.ops.page_size,
            clock=clock,
            wake_forwarder=self.forwarder.wake,
        )
        self.api = OpsApi(
            self.spool,
            gate,
            settings.ops,
            self.metrics,
            clock=clock,
            wake_relay=self.relay.wake,
            throttles=self._throttles,
        )
        policy_api = PolicyApi(
            self.spool,
            gate,
            policies=lambda: self.engine.policies,
            reload=self.reload_policies,
            detail=self.api.detail,
            clock=clock,
            wake_relay=self.relay.wake,
        )
        self.http_app = create_app(
            self.spool,
            self.metrics,
            [
                self.api,
                SegmentsApi(self.spool, gate, self.loader, settings.segments),
                policy_api,
                PreflightApi(gate, self.spool, self.admitter.preflight),
                webhooks,
            ],
            http=settings.http,
            clock=clock,
        )
        self.console = Console(
            self.spool,
            gate,
            self.api,
            settings.console,
            policies=lambda: self.engine.policies,
            clock=clock,
        )
        self.console.mount(self.http_app)
        self.canaries = CanaryWatcher(
            self.spool,
            lambda: self.engine.judge_feedback,
            poll_interval=settings.ops.canary_poll_interval,
            clock=clock,
            on_release=self.relay.wake,
        )
        self.addresses: Addresses | None = None
        self.smtp: asyncio.Server | SmtpProcesses | None = None  # the SMTP listener, once bound
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._reload_wanted = asyncio.Event()
        self._reloading = asyncio.Lock()

    def _verifier(self) -> Verifier | None:
        """Load the webhook's verification key (a key that is not one is a config error)."""
        hook = self.settings.webhooks.sendgrid
        if not hook.enabled:
            return None
        try:
            key = load_public_key(hook.public_key)
        except ValueError as exc:
            key_path = "webhooks.sendgrid.public_key"
            raise ConfigError(key_path, key_path, str(exc)) from None
        return Verifier(key, hook.tolerance, self._clock)

    def _esp(self, authenticator: Authenticator) -> EspIngress:
        """Build the HTTP send API, whose API keys are the ops API's tokens."""

        async def api_key(secret: str) -> ApiKey | None:
            principal = await authenticator.of_token(secret)
            return None if principal is None else ApiKey(principal.name, principal.roles)

        ops = self.settings.ops
        return EspIngress(
            self.settings.esp,
            key_header=self.settings.campaigns.key_headers[0],
            admit_all=self.admitter.admit_all,
            authenticate=api_key,
            metrics=self.metrics,
            failures=FailedAttempts(ops.auth_max_failures, ops.auth_failure_window),
            hostname=self.settings.smtp.hostname or socket.getfqdn(),
            client_of=ClientAddress.of(ops.trusted_proxies),
            clock=self._clock,
        )

    async def reload_policies(self, actor: str) -> tuple[PolicySet, PolicySet]:
        """Load the policy folder again and switch to it; return (before, after).

        All or nothing for the rules: on any problem (`PolicyError`, a segment file that
        cannot be read) the old set stays in force and the error is raised and logged.
        Segment files the new set names are loaded first, when their content changed.
        """
        async with self._reloading:
            before = self.engine.policies
            try:
                policies = await asyncio.to_thread(
                    load_policies, self.settings.policies.dir, self.registry
                )
                await self._load_segment_files(policies)
            except ConfigError as exc:
                log.error(  # noqa: TRY400 - the problems are the message; no traceback helps
                    "policies_reload_failed", actor=actor, version=before.version, error=str(exc)
                )
                raise
            engine = self._engine(policies)
            self.metrics.declare_policies(policies.version, engine.rule_modes())
            self.metrics.declare_throttles(engine.throttle_rules())
            self.engine = engine
            self.admitter.use_decider(engine)
            log.info(
                "policies_reloaded",
                actor=actor,
                previous=before.version,
                version=policies.version,
                rules=len(policies.rules),
            )
            return before, policies

    def _throttles(self, campaign: Campaign) -> tuple[Throttle, ...]:
        """Return the relay throttles of the engine in force now (a reload applies at once)."""
        return self.engine.throttles(campaign)

    def _analysers(self, settings: Settings) -> ProcessAnalysers | None:
        """Analysis processes when the settings ask for them; None: the admitter's threads."""
        processes = settings.policies.analysis_processes()
        if not processes:
            return None
        timeout = settings.policies.content_timeout
        replaced = self.metrics.analysis_replaced
        return ProcessAnalysers(
            processes,
            timeout,
            log_settings=settings.log,
            on_replaced=lambda reason: replaced.labels(reason=reason).inc(),
        )

    def _engine(self, policies: PolicySet) -> Engine:
        """Build the decider for a policy set, with the budgets of the settings."""
        budgets = self.settings.policies
        return Engine(
            policies,
            registry=self.registry,
            clock=self._clock,
            budget=budgets.check_budget,
            scan_budget=budgets.scan_budget,
        )

    def request_reload(self) -> None:
        """Ask for a policy reload (SIGHUP); the reloader task does it and logs the outcome."""
        self._reload_wanted.set()

    async def _reloader(self) -> None:
        """Reload the policies whenever asked; cancelled at shutdown."""
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            with contextlib.suppress(ConfigError):  # logged; the old set stays in force
                await self.reload_policies("SIGHUP")

    async def _load_segment_files(self, policies: PolicySet | None = None) -> None:
        """Load the segments the policy files name, when their content changed."""
        for source in (policies or self.engine.policies).segment_files:
            log.info("segment_file_checking", segment=source.name, path=str(source.path))
            try:
                await self.loader.load_file(source.name, source.path, source.column)
            except (OSError, ValueError) as exc:
                reason = f"cannot load {source.path}: {getattr(exc, 'strerror', None) or exc}"
                raise ConfigError(
                    source.declared_in, f"segments.{source.name}.file", reason
                ) from None

    async def _maintain(self) -> None:
        """Purge replaced segment versions and frequency counts past every window."""
        while not self._stop.is_set():
            try:
                await self.loader.purge()
                windows = self.engine.frequency_windows()
                await self.spool.prune_frequency(self._clock() - max(windows, default=0.0))
                await self._retire_bodies()
                max_age = self.settings.webhooks.sendgrid.max_age
                await self.spool.prune_feedback(self._clock() - max_age - SEEN_MARGIN)
            except SpoolError as exc:
                # Housekeeping waits for the spool to come back; the gateway stays up.
                log.warning("maintenance_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), MAINTENANCE_INTERVAL)

    async def _retire_bodies(self) -> None:
        """Retire the bodies of done messages past `spool.retention`, a bounded batch a pass."""
        retention = self.settings.spool.retention
        if not retention:
            return
        now = self._clock()
        retired = 0
        for _ in range(RETIRE_CHUNKS):
            done = await self.spool.retire_bodies(now - retention, now, RETIRE_CHUNK)
            retired += done
            if done < RETIRE_CHUNK:
                break
        if retired:
            log.info("message_bodies_retired", messages=retired, retention=retention)

    def _announce(self, addresses: Addresses) -> None:
        """Log the `listening` event with the bound addresses (ports may have been 0)."""
        log.info(
            "listening",
            smtp="{}:{}".format(*addresses.smtp),
            http="{}:{}".format(*addresses.http),
            esp="{}:{}".format(*addresses.esp) if addresses.esp else "",
            upstream=self.settings.upstream.kind,
            spool=redacted(self.settings.spool.url),
            policies=self.engine.policies.version,
            rules=len(self.engine.policies.rules),
        )

    async def _listen_smtp(self) -> tuple[str, int]:
        """Bind SMTP here, or with `smtp.processes` ingress processes; return its address."""
        settings = self.settings.smtp
        check_exposure(settings, users=len(await self.spool.smtp_users()))
        failures = FailedAttempts(settings.auth_max_failures, settings.auth_failure_window)
        authenticator = SmtpAuthenticator(self.spool.smtp_user, failures)
        admit = with_reports(
            self.admitter.admit, self.intake.report, self.settings.feedback.dsn_recipients
        )
        processes = settings.ingress_processes()
        if not processes:
            server = await start_smtp(settings, admit, self.metrics, authenticator)
            self.smtp = server
            host, port = server.sockets[0].getsockname()[:2]
            return str(host), int(port)
        children = SmtpProcesses(
            settings,
            processes,
            admit=admit,
            authenticator=authenticator,
            metrics=self.metrics,
            log_settings=self.settings.log,
            event_loop=self.settings.runtime.event_loop,
        )
        self.smtp = children
        await children.start()
        return children.address

    def _close_smtp(self) -> None:
        """Stop accepting SMTP connections (closing twice does nothing)."""
        if self.smtp is not None:
            self.smtp.close()

    async def _listen_http(self) -> tuple[web.AppRunner, web.AppRunner | None]:
        """Bind the ops API's listener, and the HTTP send API's when esp.listen is set."""
        runner = web.AppRunner(self.http_app, access_log=None)
        await runner.setup()
        try:
            host, port = split_hostport(self.settings.http.listen)
            await web.TCPSite(runner, host, port).start()
            if not self.settings.esp.enabled:
                return runner, None
            return runner, await start_esp(self.esp, self.settings.esp.listen)
        except BaseException:
            await runner.cleanup()
            raise

    def stop(self) -> None:
        """Ask `run` to shut down."""
        self._stop.set()

    async def wait_ready(self) -> Addresses:
        """Wait until the listeners are bound and return their addresses."""
        await self._ready.wait()
        if self.addresses is None:
            raise RuntimeError("ready without addresses")
        return self.addresses

    async def run(self) -> None:
        """Open the spool, serve until `stop`, then shut down in order."""
        await self.spool.open()
        try:
            # Child processes start before the listeners, not with the first message.
            await asyncio.gather(self.admitter.open(), self.upstream.open())
            await self._load_segment_files()
            smtp_address = await self._listen_smtp()
            runner, esp = await self._listen_http()
            try:
                async with asyncio.TaskGroup() as tasks:
                    relay_task = tasks.create_task(self.relay.run())
                    tasks.create_task(self._maintain())
                    tasks.create_task(self.forwarder.run())
                    tasks.create_task(self.canaries.run(self._stop))
                    reloader = tasks.create_task(self._reloader())
                    self.addresses = Addresses(
                        smtp=smtp_address,
                        http=tuple(runner.addresses[0][:2]),
                        esp=tuple(esp.addresses[0][:2]) if esp is not None else None,
                    )
                    self._announce(self.addresses)
                    self._ready.set()
                    await self._stop.wait()
                    log.info("shutdown_started")
                    reloader.cancel()
                    self._close_smtp()
                    await _close(esp, runner)
                    self.forwarder.stop()  # finishes the batch in hand
                    self.relay.stop()
                    try:
                        await asyncio.wait_for(
                            asyncio.shield(relay_task), self.settings.relay.drain_timeout
                        )
                    except TimeoutError:
                        log.warning(
                            "relay_drain_timeout", seconds=self.settings.relay.drain_timeout
                        )
                        relay_task.cancel()
            finally:
                self._close_smtp()
                await _close(esp, runner)
                try:
                    given_back = await self.spool.release_leases(self.relay.owner, time.time())
                except SpoolError as exc:  # they run out by themselves (relay.lease)
                    log.warning("leases_not_given_back", error=str(exc))
                else:
                    if given_back:
                        log.info("leases_given_back", recipients=given_back)
        finally:
            if isinstance(self.smtp, SmtpProcesses):  # after the relay's drain, as the loop's end
                await self.smtp.stop()
            await self.upstream.close()
            await self.admitter.close()
            await self.spool.close()
            log.info("shutdown_complete")


async def _close(*runners: web.AppRunner | None) -> None:
    """Close HTTP listeners (closing one twice does nothing)."""
    for runner in runners:
        if runner is not None:
            await runner.cleanup()
