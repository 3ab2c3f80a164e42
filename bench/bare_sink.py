"""A bare aiosmtpd server that answers 250 to DATA and stores nothing: the accept ceiling.

Run as a child process with the interpreter of the gateway under test, so it uses the same
aiosmtpd version. It uses the standard asyncio event loop, like the issue's anchor,
whatever loop the gateway chooses. Standard library and aiosmtpd only.

    python bench/bare_sink.py PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiosmtpd.smtp import SMTP


class Handler:
    async def handle_DATA(self, *_hook_args) -> str:  # noqa: N802 - aiosmtpd's hook name
        return "250 2.0.0 OK"


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            Handler(), decode_data=False, enable_SMTPUTF8=True, hostname="bare", loop=loop
        ),
        host="127.0.0.1",
        port=port,
    )
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    async with server:
        await stopped.wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
