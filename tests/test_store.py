"""The store: migrations match the tables, constraints hold, bad URLs get a clear error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from controller.errors import StoreError
from controller.store import db, open_store
from controller.store.tables import metadata, workflow_versions, workflows

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_migrations_create_exactly_the_tables(store_url: str) -> None:
    """Alembic's head schema and the SQLAlchemy tables do not differ."""
    store = open_store(store_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
    assert store.is_current()
    assert db.HEAD == ScriptDirectory(str(db.MIGRATIONS)).get_current_head()  # the constant is_current reads
    store.upgrade()  # idempotent
    store.close()


def test_version_numbers_are_unique_per_workflow(store_url: str) -> None:
    """The store refuses a second row for the same (workflow, version)."""
    store = open_store(store_url)
    row = {"workflow_id": 1, "version": 1, "commit": "c", "author": "a", "author_email": "e", "committed_at": NOW,
           "summary": "s", "path": "p", "content": {}, "content_hash": "h", "source_text": "", "created_at": NOW}
    with store.write() as conn:
        conn.execute(insert(workflows).values(key="acme/a", account="acme", name="a", path="p", version=1,
                                              enabled=True, calls=[], deleted=False, sync="Synced", message="",
                                              conditions=[], created_at=NOW, updated_at=NOW))
        conn.execute(insert(workflow_versions).values(row))
    with pytest.raises(IntegrityError), store.write() as conn:
        conn.execute(insert(workflow_versions).values(row))
    store.close()


def test_bad_url_is_a_store_error() -> None:
    """A malformed or unreachable database URL raises StoreError with the URL in the message."""
    with pytest.raises(StoreError, match="bad database URL"):
        open_store("not a url")
    with pytest.raises(StoreError, match="not reachable"):
        open_store("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_a_job_table_the_scheduler_made_before_the_migrations_is_kept(store_url: str) -> None:
    """A store of an older release, whose APScheduler made its own job table, migrates to head with the
    table and its jobs as they were, and the schema then equals a new store's."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from sqlalchemy import select

    from controller.store.tables import schedule_jobs

    store = open_store(store_url, upgrade=False)
    store.upgrade("0014")
    assert not store.is_current()
    old = SQLAlchemyJobStore(engine=store.engine)  # the table as APScheduler makes it
    old.start(BackgroundScheduler(), "default")
    with store.engine.begin() as conn:
        conn.execute(insert(old.jobs_t).values(id="schedule:acme/tick", next_run_time=1.5, job_state=b"state"))
    store.upgrade()
    with store.engine.connect() as conn:
        assert conn.execute(select(schedule_jobs)).all() == [("schedule:acme/tick", 1.5, b"state")]
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []
    assert store.is_current()
    store.close()
