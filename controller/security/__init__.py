"""Credentials of the HTTP service, kept in the store and never in git (no Flask here).

``secrets``   webhook signing secrets: encrypted at rest (Fernet), made on first apply, rotated
``signing``   the HMAC signatures senders put on webhooks, and git hosts' push-hook checks
``tokens``    API bearer tokens: stored as SHA-256, scoped to one account, with permissions
``payloads``  untrusted JSON bodies made safe to store
``intake``    a signed webhook -> a queued execution, in one transaction with its secret
"""
