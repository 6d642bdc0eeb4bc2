"""Signatures on incoming hooks, checked in constant time.

A sender of a webhook signs every request with the workflow's secret::

    X-Wfc-Timestamp: 1767603600                      (unix seconds)
    X-Wfc-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

where ``secret`` is the UTF-8 text ``wfctl webhook rotate`` printed. A timestamp more than
:data:`TOLERANCE_SECONDS` from now is refused, so a captured request cannot be replayed later.
The same endpoint takes Standard Webhooks (standardwebhooks.com: Svix, Clerk, Resend, ...)::

    webhook-id: msg_2KWPBgLlAfxdpx2AI54pPJ85f4W       (the message id: a replay of it is refused)
    webhook-timestamp: 1767603600                     (unix seconds)
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")> [v1,<...> ...]

where ``key`` is the base64 after ``whsec_`` in the same secret, decoded. A sender in the middle of
a rotation may send several space-separated signatures; one made with the current secret is enough.
Git hosts sign push hooks their own way: GitHub with ``X-Hub-Signature-256: sha256=<hex
HMAC-SHA256(secret, body)>``, GitLab by sending the secret itself in ``X-Gitlab-Token``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime

from controller.errors import AuthError

TIMESTAMP_HEADER = "X-Wfc-Timestamp"
SIGNATURE_HEADER = "X-Wfc-Signature"
STANDARD_ID_HEADER = "webhook-id"
STANDARD_TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"
TOLERANCE_SECONDS = 300
_MAX_TIMESTAMP_DIGITS = 12
_MAX_SIGNATURES = 10  # a rotation overlap needs two; more is someone making us hash
_MAX_ID = 256


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Wfc-Signature`` value for ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def check_timestamp(value: str | None, now: datetime, header: str = TIMESTAMP_HEADER) -> None:
    """AuthError unless ``value`` (of ``header``) is unix seconds within :data:`TOLERANCE_SECONDS` of ``now``."""
    if not value:
        raise AuthError(f"missing {header} header; send the unix time in seconds and sign it with the body")
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS):
        raise AuthError(f"{header} must be unix seconds (digits only), got {value[:40]!r}")
    skew = int(value) - now.timestamp()
    if abs(skew) > TOLERANCE_SECONDS:
        raise AuthError(f"{header} is {abs(skew):.0f}s {'ahead of' if skew > 0 else 'behind'} the "
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


def standard_key(secret: str) -> bytes:
    """The HMAC key a Standard Webhooks sender derives from ``secret``: the base64 after ``whsec_``, decoded."""
    text = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise AuthError("this workflow's secret is not in the Standard Webhooks form (whsec_<base64>), made before "
                        "wfctl took Standard Webhooks; rotate it once (`wfctl webhook rotate ACCOUNT/NAME`) and "
                        "configure the sender with the new one") from None


def check_standard_signature(secret: str, message_id: str | None, timestamp: str, body: bytes,
                             signature: str | None) -> None:
    """AuthError unless one ``v1,<base64>`` in ``signature`` signs ``"<id>.<timestamp>.<body>"`` (Standard Webhooks)."""
    if not message_id or len(message_id) > _MAX_ID:
        raise AuthError(f"missing or over-long {STANDARD_ID_HEADER} header (at most {_MAX_ID} characters); a Standard "
                        f"Webhooks sender sends the message id")
    if not signature:
        raise AuthError(f"missing {STANDARD_SIGNATURE_HEADER} header; send v1,<base64 HMAC-SHA256>")
    offered = signature.split()
    if len(offered) > _MAX_SIGNATURES:
        raise AuthError(f"{STANDARD_SIGNATURE_HEADER} carries {len(offered)} signatures; send at most "
                        f"{_MAX_SIGNATURES}")
    content = message_id.encode("utf-8", "replace") + b"." + timestamp.encode("ascii") + b"." + body
    expected = hmac.new(standard_key(secret), content, hashlib.sha256).digest()
    for item in offered:
        version, _, value = item.partition(",")
        if version != "v1":
            continue  # v1a (asymmetric) and future versions: not ours to check
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, given):
            return
    raise AuthError(f"no signature in {STANDARD_SIGNATURE_HEADER} matches: sign '<webhook-id>.<timestamp>.<raw body>' "
                    f"with the workflow's current secret (`wfctl webhook rotate ACCOUNT/NAME` makes a new one)")


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
