"""Webhook secrets made in bulk (a first sync of many webhook workflows): one per workflow, audited once each,
and a row another writer made first left as it is, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from enginekit import kit
from httpkit import WF, wf
from sqlalchemy import select, text

from controller.security import secrets
from controller.store.tables import audit_events, webhook_secrets, workflows

SET = "    - {id: a, type: set, vars: {x: 1}}\n"
HOOKS = [f"hook-{n:02d}" for n in range(40)]


def _deploy(k, names: list[str]) -> None:  # type: ignore[no-untyped-def]
    files = {WF.format("acme", name): wf(name, "{type: webhook}", SET) for name in names}
    files[WF.format("acme", "by-hand")] = wf("by-hand", "{type: manual, entities: [ticket]}", SET)
    files[WF.format("globex", "off")] = wf("off", "{type: webhook}", SET, enabled=False)
    k.deploy(files, "webhooks")


def test_every_webhook_workflow_gets_one_secret_and_one_audit_event(tmp_path: Path, store_url: str) -> None:
    with kit(tmp_path, store_url) as k:
        _deploy(k, HOOKS)
        box = secrets.SecretBox(Fernet.generate_key())
        made = secrets.ensure_webhook_secrets(k.store, box, k.clock.now())
        keys = sorted([f"acme/{name}" for name in HOOKS] + ["globex/off"])
        assert made == keys  # in key order; a disabled webhook workflow has one too, a manual one none
        assert secrets.ensure_webhook_secrets(k.store, box) == []
        with k.store.read() as conn:
            rows = conn.execute(select(workflows.c.key, webhook_secrets.c.ciphertext, webhook_secrets.c.fingerprint,
                                       webhook_secrets.c.generation)
                                .join(workflows, workflows.c.id == webhook_secrets.c.workflow_id)
                                .order_by(workflows.c.key)).all()
            events = conn.execute(select(workflows.c.key, audit_events.c.actor, audit_events.c.version,
                                         audit_events.c.changes, audit_events.c.message)
                                  .join(workflows, workflows.c.id == audit_events.c.workflow_id)
                                  .where(audit_events.c.action == "secret_created").order_by(audit_events.c.id)).all()
        assert [r.key for r in rows] == keys and {r.generation for r in rows} == {1}
        assert all(secrets.fingerprint(box.decrypt(r.ciphertext)) == r.fingerprint for r in rows)
        assert len({box.decrypt(r.ciphertext) for r in rows}) == len(keys)  # each its own
        printed = {r.key: r.fingerprint for r in rows}
        assert [e.key for e in events] == keys
        for e in events:
            assert (e.actor, e.version, e.changes) == ("wfctl", 1, [])
            assert e.message == (f"webhook signing secret created ({printed[e.key]}); nobody has seen it: "
                                 f"`wfctl webhook rotate {e.key}` makes one to give to the sender")


def test_a_secret_another_writer_made_first_is_left_alone(tmp_path: Path, store_url: str) -> None:
    """PostgreSQL: the bulk insert waits for the other transaction's row, then skips it (and does not audit it)."""
    if not store_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers: the other one commits before the missing rows are read")
    with kit(tmp_path, store_url) as k:
        _deploy(k, HOOKS[:5])
        box = secrets.SecretBox(Fernet.generate_key())
        theirs = secrets.new_secret()
        result: list[list[str]] = []
        with k.store.tx() as other:
            target = other.execute(select(workflows.c.id).where(workflows.c.key == "acme/hook-02")).scalar_one()
            other.execute(webhook_secrets.insert().values(
                workflow_id=target, ciphertext=box.encrypt(theirs), fingerprint=secrets.fingerprint(theirs),
                generation=1, created_at=k.clock.now()))
            blocker = other.execute(text("SELECT pg_backend_pid()")).scalar_one()
            racing = threading.Thread(target=lambda: result.append(
                secrets.ensure_webhook_secrets(k.store, box, k.clock.now())))
            racing.start()
            deadline = time.monotonic() + 30
            with k.store.engine.connect() as watch:  # until the bulk insert waits for our uncommitted row
                while not watch.execute(text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY("
                                             "pg_blocking_pids(pid))"), {"pid": blocker}).scalar_one():
                    assert racing.is_alive() and time.monotonic() < deadline, "the insert never waited"
                    time.sleep(0.01)
        racing.join(30)
        assert result == [["acme/hook-00", "acme/hook-01", "acme/hook-03", "acme/hook-04", "globex/off"]]
        with k.store.read() as conn:
            assert secrets.current(conn, box, target) == theirs
            audited = conn.execute(select(audit_events.c.workflow_id)
                                   .where(audit_events.c.action == "secret_created")).scalars().all()
        assert target not in audited and len(audited) == 5
