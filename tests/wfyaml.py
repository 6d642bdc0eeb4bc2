"""Small workflow files for tests: valid by default, with knobs for what a test changes."""

from __future__ import annotations

from collections.abc import Sequence


def workflow(
    name: str,
    *,
    subject: str = "Hello",
    calls: Sequence[str] = (),
    trigger: str = "type: manual\n    entities: [ticket]",
    enabled: bool = True,
    extra: str = "",
) -> str:
    """A valid workflow: one email.send action, then one workflow.call per name in ``calls``."""
    call_actions = "".join(
        f"    - id: call-{target}\n      type: workflow.call\n      workflow: {target}\n" for target in calls
    )
    return (
        "apiVersion: workflows/v1\n"
        "kind: Workflow\n"
        "metadata:\n"
        f"  name: {name}\n"
        "spec:\n"
        f"  enabled: {'true' if enabled else 'false'}\n"
        "  trigger:\n"
        f"    {trigger}\n"
        "  actions:\n"
        "    - id: mail-lead\n"
        "      type: email.send\n"
        "      mailbox: mailbox:mb_support\n"
        "      to: lead@acme.test\n"
        f"      subject: {subject!r}\n"
        "      body: Hi\n"
        f"{call_actions}{extra}"
    )


def broken_duration(name: str) -> str:
    """A workflow whose third line of actions holds a bad duration (line 19, column 7)."""
    return workflow(name, extra="    - id: pause\n      type: wait\n      duration: 5 minutes\n")
