"""A private Postfix instance on loopback: the relay baseline sendbrake is measured against.

Never touches the system's Postfix: everything lives in a temporary folder (its own
config_directory with main.cf and master.cf, queue_directory, data_directory and a
maillog file). It listens on one free 127.0.0.1 port and relays everything to
[127.0.0.1]:SINK_PORT; nothing is delivered locally. Apart from that it keeps Postfix's
defaults: the queue with its fsyncs, qmgr and smtp concurrency, the connection cache,
50 recipients per upstream transaction. Daemons run without chroot (upstream Postfix's
default; Debian's master.cf turns chroot on, which needs copies of /etc in the queue).

`postfix -c DIR start` works for a non-default config directory when run as root: the
`alternate_config_directories` check only applies to unprivileged callers. It must run as
root anyway (the master starts as root and drops to mail_owner `postfix`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path

from harness import HOST, Tools, free_port, port_open, wait_until

# master.cf: the services the relay path and the master need; chroot off everywhere.
_MASTER_CF = """\
{host}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
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
myhostname = postfix.bench.test
inet_interfaces = {host}
inet_protocols = ipv4
# Relay only: nothing is local, everything goes to the sink.
mydestination =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
relayhost = [{host}]:{sink_port}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
# Log to a file in the instance's folder (no syslog needed); postlogd writes it.
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
"""


class PostfixRelay:
    """Start a private Postfix relaying to `sink_port`; it is stopped when `stack` closes."""

    def __init__(self, stack: ExitStack, tools: Tools, root: Path, sink_port: int) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the Postfix baseline needs root: `postfix start` runs as root")
        self.tools = tools
        self.root = root
        self.conf = root / "conf"
        self.port = free_port()
        self.maillog = root / "maillog"
        for sub in ("conf", "queue", "data"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)  # the daemons run as `postfix` and must reach the queue
        shutil.chown(root / "data", user="postfix")
        values = {"host": HOST, "port": self.port, "sink_port": sink_port, "root": root}
        (self.conf / "main.cf").write_text(_MAIN_CF.format(**values))
        (self.conf / "master.cf").write_text(_MASTER_CF.format(**values))
        # `check` creates the queue's subdirectories with their owners and modes.
        self._postfix("check")
        self._postfix("start")
        stack.callback(self.stop)
        wait_until(lambda: port_open(self.port), "postfix smtpd", timeout=30)

    def _postfix(self, command: str) -> None:
        env = {**os.environ, "MAIL_CONFIG": str(self.conf)}
        done = subprocess.run(
            [self.tools.postfix, "-c", str(self.conf), command],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if done.returncode != 0:
            # postfix(1) reports to the maillog file, not to a pipe.
            log = self.maillog.read_text(errors="replace")[-3000:] if self.maillog.exists() else ""
            raise RuntimeError(f"postfix {command} failed ({done.returncode}):\n{log}")

    def master_pid(self) -> int | None:
        path = self.root / "queue" / "pid" / "master.pid"
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def alive(self) -> None:
        """Raise if the master daemon is gone."""
        pid = self.master_pid()
        if pid is None or not Path(f"/proc/{pid}").exists():
            raise RuntimeError(f"postfix master is not running\n{self.maillog.read_text()[-3000:]}")

    def stop(self) -> None:
        """`postfix stop` waits for the master; `abort` if it is still there."""
        pid = self.master_pid()
        if pid is None or not Path(f"/proc/{pid}").exists():
            return
        try:
            self._postfix("stop")
        except RuntimeError:
            self._postfix("abort")

    def recipient_limit(self) -> int:
        """Recipients per upstream transaction (smtp_destination_recipient_limit)."""
        out = subprocess.run(
            [self.tools.postconf, "-c", str(self.conf), "-x", "-h",
             "smtp_destination_recipient_limit"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return int(out.stdout.strip())

    def sent(self) -> int:
        """Recipients the maillog reports as delivered (status=sent)."""
        if not self.maillog.exists():
            return 0
        with self.maillog.open("rb") as handle:
            return sum(1 for line in handle if b" status=sent " in line)
