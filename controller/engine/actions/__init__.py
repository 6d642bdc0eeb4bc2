"""One module per action kind. Each exposes ``run(inputs, ctx) -> Outcome``.

``inputs`` is the action's definition with every ``{{ … }}`` already resolved (what the step row
shows as its input); ``ctx`` gives the directory, the effects and the time. Effectful kinds go
through ``ctx.effects``; control-flow kinds (``wait``, ``if``, ``workflow.call``) return an
outcome that tells the interpreter what to do next.
"""
