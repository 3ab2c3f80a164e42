"""A private Postfix on loopback: the platform's MTA in front of a test gateway.

Debian's postfix (installed by `make test`), never the system instance: each instance owns
a folder with its config_directory (main.cf, master.cf), queue_directory, data_directory
and maillog file. The folder is a fresh one in the temp dir, not in the test's tmp_path:
the daemons run as `postfix` and open data_directory by its absolute path, which pytest's
private (0700) tree would not let them reach; the maillog is copied into tmp_path at the
end. It takes mail from `sendmail -C DIR` (and SMTP on one free 127.0.0.1
port) and relays everything to `relayhost = [127.0.0.1]:<the gateway's port>`, except mail
for the platform's own return-path domain: that goes to a capturing SMTP server standing
for the platform's bounce mailbox, so the DSNs Postfix sends the envelope sender can be
read. Nothing is delivered on this machine.

`postfix -c DIR start` needs root (the master starts as root and drops to `postfix`); for
root the `alternate_config_directories` check does not apply, so `sendmail -C DIR` and
`postqueue -c DIR` reach the private instance. Daemons run without chroot (Debian's
master.cf chroots, which needs copies of /etc inside the queue). Commands run as asyncio
subprocesses so that a gateway on the test's loop keeps serving while Postfix talks to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually

SBIN = Path("/usr/sbin")
HOST = "127.0.0.1"

# The services the relay path needs; chroot (5th column) off everywhere.
_MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.{domain}
mydomain = {domain}
myorigin = $mydomain
inet_interfaces = loopback-only
inet_protocols = ipv4
# Nothing is local: mail goes to the gateway, the return-path domain to its mailbox.
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
relayhost = [{host}]:{relay_port}
transport_maps = inline:{{ {domain}=smtp:[{host}]:{mailbox_port} }}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
# One message, one transaction to the gateway (its own limit is 1,000 recipients): split
# in Postfix's default chunks of 50, a campaign's recipients would arrive in parallel
# transactions and which of them pass before a hold would depend on timing.
smtp_destination_recipient_limit = 1000
# A deferred message is retried within a test's deadline, and none lingers for days.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maximal_queue_lifetime = 1m
bounce_queue_lifetime = 1m
delay_warning_time = 0
biff = no
# Log to a file in the instance's folder (no syslog needed); postlogd writes it.
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
"""


def require_root() -> None:
    """Fail (not skip) where Postfix cannot run: not root, or its programs are missing."""
    if os.geteuid() != 0:
        pytest.fail("a private Postfix needs root: `postfix start` runs its master as root")
    if not (SBIN / "postfix").exists():
        pytest.fail("postfix is not installed: run `make test`, which installs it")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Postfix:
    """One private instance under `root`; `start()` it, `stop()` it."""

    def __init__(self, root: Path, *, relay_port: int, domain: str, mailbox_port: int) -> None:
        self.root = root
        self.conf = root / "conf"
        self.queue_dir = root / "queue"
        self.maillog = root / "maillog"
        self.port = free_port()
        self._values = {
            "host": HOST,
            "port": self.port,
            "root": root,
            "relay_port": relay_port,
            "domain": domain,
            "mailbox_port": mailbox_port,
        }

    async def start(self) -> None:
        for sub in (self.conf, self.queue_dir, self.root / "data"):
            sub.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root / "data", user="postfix")
        (self.conf / "main.cf").write_text(_MAIN_CF.format(**self._values))
        (self.conf / "master.cf").write_text(_MASTER_CF.format(**self._values))
        # `check` creates the queue's subdirectories with their owners and modes (maildrop
        # group postdrop, for sendmail's postdrop); `start` returns once the master is up.
        await self.postfix("check")
        await self.postfix("start")

    async def stop(self) -> None:
        """`postfix stop`, then wait until no daemon of this instance runs (`abort` if one stays)."""
        if not self.daemons():
            return
        await self.postfix("stop", check=False)
        with contextlib.suppress(AssertionError):
            await eventually(lambda: not self.daemons(), timeout=10)
            return
        await self.postfix("abort", check=False)
        await eventually(
            lambda: not self.daemons(), timeout=10, message="postfix daemons still running"
        )

    def daemons(self) -> list[int]:
        """Processes of this instance: every Postfix daemon works in its queue_directory."""
        found = []
        for cwd in Path("/proc").glob("[0-9]*/cwd"):
            with contextlib.suppress(OSError):
                if cwd.readlink() == self.queue_dir:
                    found.append(int(cwd.parent.name))
        return found

    async def sendmail(self, sender: str, rcpts: list[str], content: bytes) -> None:
        """Submit one message the way a platform's local code does: `sendmail -f`."""
        await self._run(
            str(SBIN / "sendmail"), "-C", str(self.conf), "-i", "-f", sender, "--", *rcpts,
            stdin=content,
        )  # fmt: skip

    async def queue(self) -> list[dict[str, Any]]:
        """What is in any of the queues (maildrop, incoming, active, deferred, hold)."""
        out = await self._run(str(SBIN / "postqueue"), "-c", str(self.conf), "-j")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def log(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    async def postfix(self, command: str, *, check: bool = True) -> str:
        return await self._run(str(SBIN / "postfix"), "-c", str(self.conf), command, check=check)

    async def _run(self, *argv: str, stdin: bytes | None = None, check: bool = True) -> str:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate(stdin)
        if check and proc.returncode != 0:
            # postfix(1) reports to the maillog file rather than to the pipe.
            raise RuntimeError(
                f"{' '.join(argv)} failed ({proc.returncode}): {out.decode(errors='replace')}\n"
                f"maillog:\n{self.log()[-3000:]}"
            )
        return out.decode(errors="replace")


@contextlib.asynccontextmanager
async def private_postfix(
    tmp_path: Path, *, relay_port: int, domain: str, mailbox_port: int
) -> AsyncIterator[Postfix]:
    """A running instance relaying to `relay_port`; stopped (all daemons gone) on exit."""
    require_root()
    root = Path(tempfile.mkdtemp(prefix="sendbrake-postfix-"))
    root.chmod(0o755)  # the daemons run as `postfix` and must reach the folder
    postfix = Postfix(root, relay_port=relay_port, domain=domain, mailbox_port=mailbox_port)
    try:
        await postfix.start()
        yield postfix
    finally:
        try:
            await postfix.stop()
        finally:
            if postfix.maillog.exists():
                shutil.copy(postfix.maillog, tmp_path / "postfix-maillog")
            shutil.rmtree(root, ignore_errors=True)
