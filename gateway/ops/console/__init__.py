"""The reviewers' web console under /console/ (docs/console.md).

Server-rendered pages over the same decision functions as the JSON API: signing in with
an API token into a server-side session, the held campaigns, one campaign with its
message in a sandboxed frame, hold / release / reject with the two-operator rule, the
audit log and the policy set in force. No logic of its own decides anything.
"""
