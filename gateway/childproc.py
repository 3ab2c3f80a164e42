"""What the gateway's child processes share: framed pickles on pipes, dying with the parent.

The upstream process (`gateway.relay.upstream_process`) and the content analysis
processes (`gateway.policy.analysis_process`) are `python -m` children of the gateway.
Each frame is a 4-byte length and a pickle; both ends are this package, so unpickling
trusts its own parent or child. A child asks Linux to kill it when the gateway dies, so a
gateway killed -9 leaves no orphan behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import pickle
import signal
import sys
from typing import Any

_LENGTH = 4  # bytes of each frame's length prefix
_PR_SET_PDEATHSIG = 1


def frame(value: Any) -> bytes:
    """Encode one frame: a length prefix and a pickle."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_LENGTH, "big") + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """Decode the next frame, or return None at the end of the stream."""
    try:
        length = int.from_bytes(await reader.readexactly(_LENGTH), "big")
        return pickle.loads(await reader.readexactly(length))  # noqa: S301 - our own child
    except asyncio.IncompleteReadError:
        return None


def read_frame_blocking(fd: int) -> Any:
    """Decode the next frame of a file descriptor (unbuffered), or return None at its end."""

    def exactly(size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = os.read(fd, size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    head = exactly(_LENGTH)
    body = None if head is None else exactly(int.from_bytes(head, "big"))
    return None if body is None else pickle.loads(body)  # noqa: S301 - our own parent


def become_child() -> Any:
    """Set up a child and return its start frame (read before any event loop runs).

    The child ignores Ctrl-C (the gateway stops it in order) and asks Linux to kill it when
    the gateway dies (elsewhere, the end of its input stops it). The gateway passes its
    process id as the argument (it may be 1, in a container). A gateway that closed before
    it said anything ends the child.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gateway = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != gateway:  # the gateway died before the request took effect
            sys.exit(1)
    start = read_frame_blocking(sys.stdin.fileno())  # unbuffered: a loop may read on
    if start is None:
        sys.exit(0)
    return start


async def start_child(
    module: str, pass_fds: tuple[int, ...] = ()
) -> tuple[asyncio.subprocess.Process, asyncio.StreamWriter, asyncio.StreamReader]:
    """Start `python -m module`; return it with its input and output (its errors: the log).

    `pass_fds` are inherited by the child under the same numbers.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        str(os.getpid()),  # its parent, to tell whether it is already gone
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        pass_fds=pass_fds,
    )
    if proc.stdin is None or proc.stdout is None:
        raise RuntimeError(f"{module} has no pipes")
    return proc, proc.stdin, proc.stdout


async def reap(proc: asyncio.subprocess.Process) -> None:
    """Wait for a child to exit and close its pipes' transport.

    asyncio's Process has no public close: without it the transport may outlive the loop,
    and a reader still waiting on the child's output gets its end (and says it died).
    """
    await proc.wait()
    proc._transport.close()  # type: ignore[attr-defined] # noqa: SLF001
