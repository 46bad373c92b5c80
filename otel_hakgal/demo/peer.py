"""Delegating commands to a peer HAK-GAL: one trace across two processes.

With ``HAKGAL_PEER_URL`` set (the base URL of another HAK-GAL API, e.g.
``http://127.0.0.1:5002``), the verbs named in ``HAKGAL_PEER_VERBS`` (comma
separated; unset: every verb) are not run here but sent to the peer's
``POST /api/command``, under this process's command span, with the trace
context in the request headers (``hg.propagation_headers()``, as the oracle
prover does): the peer's spans join the same trace.

What the peer answers becomes this command's answer: its reply on a 2xx;
its client mistake (a 4xx) is this client's mistake, with the same status;
a 5xx, a 504 or no answer is a fault of this server (:class:`PeerError`,
answered 500).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

import otel_hakgal as hg
from otel_hakgal.demo.k_assistant import ClientMistake, Reply

PEER_URL_ENV = "HAKGAL_PEER_URL"
PEER_VERBS_ENV = "HAKGAL_PEER_VERBS"


class PeerError(Exception):
    """The peer failed (a 5xx or no answer): a fault of this server too."""


class PeerRejected(ClientMistake):
    """The peer refused the command as the client's mistake; answered with the peer's status."""

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status  # type: ignore[misc]


@dataclass(frozen=True)
class Peer:
    base_url: str
    verbs: frozenset[str] | None = None  # None: every verb
    timeout_s: float = 150.0  # longer than any command's own timeout (build_kb: 120 s)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Peer | None:
        """The peer ``$HAKGAL_PEER_URL`` names, delegating ``$HAKGAL_PEER_VERBS``; None without one."""
        url = environ.get(PEER_URL_ENV, "").strip()
        if not url:
            return None
        verbs = {verb.strip().lower() for verb in environ.get(PEER_VERBS_ENV, "").split(",") if verb.strip()}
        return cls(url.rstrip("/"), frozenset(verbs) or None)

    def delegates(self, verb: str) -> bool:
        return self.verbs is None or verb in self.verbs

    def run(self, command: str) -> Reply:
        """Run ``command`` on the peer; its reply, or :class:`PeerRejected` / :class:`PeerError`."""
        request = urllib.request.Request(
            f"{self.base_url}/api/command",
            data=json.dumps({"command": command}).encode(),
            headers={"Content-Type": "application/json", **hg.propagation_headers()},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            text = _error_text(error)
            if 400 <= error.code < 500:
                raise PeerRejected(text, error.code) from None
            raise PeerError(f"the peer answered {error.code}: {text}") from None
        except (OSError, ValueError) as error:  # unreachable, timed out, or not JSON
            raise PeerError(f"no answer from the peer at {self.base_url}: {error}") from None
        return Reply(
            str(body.get("chatResponse", "")), str(body.get("ragContext", "")), list(body.get("dataSources", []))
        )


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        return error.reason if isinstance(error.reason, str) else str(error.code)
    return str(body.get("error") or body.get("chatResponse") or error.code)
