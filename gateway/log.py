"""Structured logging setup: JSON lines by default, a console renderer in a terminal.

Modules get loggers with `structlog.get_logger()` and log events with bound IDs, never
f-strings. Only the service and the CLI call `configure`. `SERVER_LOG` is the connection
log both HTTP listeners (ops API, send API) give aiohttp.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError


class _ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's connection log, without the bytes of requests its parser refused.

    The parser's error quotes the offending line, which may be an `Authorization` header:
    a refused request is logged by its error's name and status alone, at info level.
    """

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        refused = kwargs.get("exc_info")
        if isinstance(refused, HttpProcessingError):
            kwargs["exc_info"] = None
            level, msg, args = (
                logging.INFO,
                "http_request_refused %s %s",
                (
                    type(refused).__name__,
                    refused.code,
                ),
            )
        super().log(level, msg, *args, **kwargs)


SERVER_LOG = _ServerLog(logging.getLogger("aiohttp.server"))


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure(
    fmt: str = "auto", level: str = "info", stream: TextIO | None = None, *, final: bool = False
) -> None:
    """Configure structlog (and the stdlib loggers of our libraries) once per process.

    `final` (the serving process) lets each module's logger keep what it built on first
    use instead of rebuilding it at every call; tests that configure again leave it off.
    """
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=final,
    )
    # aiosmtpd and aiohttp log through the stdlib; route their warnings to the same stream.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
