"""The exception tree of sendbrake, drawn in one place.

SendbrakeError
 ├── ConfigError          a settings or policy file is wrong (names file, line, key)
 │    └── PolicyError     one or more policy files are wrong; `problems` lists each
 ├── SpoolError           the spool could not commit or read; callers answer 4xx
 │    └── SpoolLocked     another gateway already owns this SQLite spool
 ├── CampaignRejected     mail for a campaign an operator rejected (SMTP 550)
 ├── MessageRefused       a message that cannot be admitted as sent (SMTP 554); names the header
 ├── Conflict             an operation that the current state does not allow (HTTP 409)
 └── IllegalTransition    a state change the model's transition table forbids (a bug)
"""

from __future__ import annotations


class SendbrakeError(Exception):
    """Base of every error sendbrake raises on purpose."""


class ConfigError(SendbrakeError):
    """A configuration source is invalid.

    `where` is a human location such as ``sendbrake.yaml:12`` or
    ``environment SENDBRAKE_SMTP__LISTEN``; `key` is the dotted key path.
    """

    def __init__(self, where: str, key: str, reason: str) -> None:
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")
        self.where = where
        self.key = key
        self.reason = reason


class PolicyError(ConfigError):
    """The policy directory does not load; every problem is listed, not just the first."""

    def __init__(self, problems: list[ConfigError]) -> None:
        first = problems[0]
        super().__init__(first.where, first.key, first.reason)
        self.problems = tuple(problems)

    def __str__(self) -> str:
        return "\n".join(str(ConfigError.__str__(p)) for p in self.problems)


class SpoolError(SendbrakeError):
    """The spool failed to commit or read."""


class SpoolLocked(SpoolError):
    """Another process holds the lock on this SQLite spool."""


class CampaignRejected(SendbrakeError):
    """Mail arrived for a campaign that an operator rejected."""

    def __init__(self, campaign_id: str, key: str) -> None:
        super().__init__(f"campaign {key} ({campaign_id}) was rejected by an operator")
        self.campaign_id = campaign_id
        self.key = key


class MessageRefused(SendbrakeError):
    """A message that can never be admitted as it is: a retry would send the same bytes.

    `header` names the field at fault; the message says what is wrong with it, in words
    fit for an SMTP reply (no input is echoed). `index` says which message of a batch
    admitted together (the HTTP send API's personalizations) it is, when it is one.
    """

    def __init__(self, header: str, reason: str, *, index: int | None = None) -> None:
        super().__init__(f"Header {header} {reason}")
        self.header = header
        self.reason = reason
        self.index = index


class Conflict(SendbrakeError):
    """The request is valid but the current state does not allow it (HTTP 409)."""


class IllegalTransition(SendbrakeError):
    """Code asked for a state change the transition tables forbid: a bug, never input."""


class Unanalysed(Exception):
    """Content could not be analysed; the message says why (it becomes the report's error)."""
