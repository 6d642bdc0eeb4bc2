"""The execution engine: triggers become executions, executions run actions, steps leave a trace.

``store -> engine -> store``: definitions come from ``workflow_versions`` (pinned per execution),
every step writes a row. Side effects go through one :class:`~controller.engine.effects.Effects`
object, so a dry run is the same interpreter over effects that record instead of acting.
"""
