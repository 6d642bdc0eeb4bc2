"""Signatures on incoming hooks, checked in constant time.

A sender of a webhook signs every request with the workflow's secret::

    X-Wfc-Timestamp: 1767603600                      (unix seconds)
    X-Wfc-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

where ``secret`` is the UTF-8 text ``wfctl webhook rotate`` printed. A timestamp more than
:data:`TOLERANCE_SECONDS` from now is refused, so a captured request cannot be replayed later.
Git hosts sign push hooks their own way: GitHub with ``X-Hub-Signature-256: sha256=<hex
HMAC-SHA256(secret, body)>``, GitLab by sending the secret itself in ``X-Gitlab-Token``.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from controller.errors import AuthError

TIMESTAMP_HEADER = "X-Wfc-Timestamp"
SIGNATURE_HEADER = "X-Wfc-Signature"
TOLERANCE_SECONDS = 300
_MAX_TIMESTAMP_DIGITS = 12


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Wfc-Signature`` value for ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def check_timestamp(value: str | None, now: datetime) -> None:
    """AuthError unless ``value`` is unix seconds within :data:`TOLERANCE_SECONDS` of ``now``."""
    if not value:
        raise AuthError(f"missing {TIMESTAMP_HEADER} header; send the unix time in seconds and sign "
                        f"'<timestamp>.<raw body>'")
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS):
        raise AuthError(f"{TIMESTAMP_HEADER} must be unix seconds (digits only), got {value[:40]!r}")
    skew = int(value) - now.timestamp()
    if abs(skew) > TOLERANCE_SECONDS:
        raise AuthError(f"{TIMESTAMP_HEADER} is {abs(skew):.0f}s {'ahead of' if skew > 0 else 'behind'} the "
                        f"server's clock (at most {TOLERANCE_SECONDS}s): a stale or replayed request; sign each "
                        f"request with the current time")


def check_signature(secret: str, timestamp: str, body: bytes, signature: str | None) -> None:
    """AuthError unless ``signature`` is the HMAC of ``"<timestamp>.<body>"`` under ``secret``."""
    if not signature:
        raise AuthError(f"missing {SIGNATURE_HEADER} header; send sha256=<hex HMAC-SHA256(secret, "
                        f"'<timestamp>.<raw body>')>")
    expected = sign(secret, timestamp, body).encode("ascii")
    if not hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace")):
        raise AuthError(f"{SIGNATURE_HEADER} does not match: sign '<timestamp>.<raw body>' with HMAC-SHA256 and "
                        f"the workflow's current secret (`wfctl webhook rotate ACCOUNT/NAME` makes a new one)")


def github_signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``X-Hub-Signature-256`` is GitHub's signature of ``body`` under ``secret``."""
    if not header:
        return False
    expected = "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), header.strip().encode("utf-8", "replace"))


def gitlab_token_ok(secret: str, header: str | None) -> bool:
    """Whether ``X-Gitlab-Token`` is the configured secret."""
    if not header:
        return False
    return hmac.compare_digest(secret.encode("utf-8"), header.encode("utf-8", "replace"))
