"""wfctl: a declarative GitOps controller for business automation workflows.

Data flows one way: ``source`` (git) -> ``reconcile`` (load, validate, plan, apply) -> ``store``
(SQL) -> ``engine`` (executions). ``webhooks`` (Flask) calls into this package; nothing here
imports Flask.
"""

__version__ = "0.1.0"
