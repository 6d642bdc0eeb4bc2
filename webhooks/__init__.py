"""The HTTP layer of wfctl (Flask): hooks, the JSON API, /metrics.

It only calls into ``controller``; nothing in ``controller`` imports it. The app factory
``create_app(settings)`` arrives with the HTTP service issue; until then the package holds no code.
"""
