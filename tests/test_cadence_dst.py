"""Cadence floors across daylight-saving changes, and the same floors again when jobs are registered."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from enginekit import Kit, kit
from pydantic import ValidationError
from sqlalchemy import select, update

from controller.engine.scheduler import Schedules
from controller.model import field_path, load_workflow, validation_issues
from controller.model.cadence import check_cron
from controller.store.tables import workflow_versions, workflows

NEW_YEAR = date(2027, 1, 4)  # the two years checked from here start with the changes of 2027
SKIPS = "0,59 1,3 * * *"  # 01:59 and 03:00: one minute apart where 02:00 never comes


def make(**trigger: str) -> dict[str, Any]:
    """Raw data of a valid workflow with a schedule trigger of ``trigger``."""
    return {
        "apiVersion": "workflows/v1",
        "kind": "Workflow",
        "metadata": {"name": "nightly"},
        "spec": {"trigger": {"type": "schedule", **trigger}, "actions": [{"id": "nap", "type": "wait", "duration": "1m"}]},
    }


def issues(data: dict[str, Any]) -> list[tuple[str, str]]:
    """``(field_path, message)`` for every problem in ``data``; [] when it is valid."""
    try:
        load_workflow(data)
    except ValidationError as error:
        return [(field_path(loc), message) for loc, message in validation_issues(error)]
    return []


# -- the model's check ------------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "day"), [("Europe/Berlin", "2027-03-28"), ("America/New_York", "2027-03-14")])
def test_a_cron_closer_than_the_floor_where_the_clocks_skip_an_hour_is_refused(zone: str, day: str) -> None:
    """On the spring-forward night 01:59 is followed by 03:00 one real minute later: refused, naming the night."""
    with pytest.raises(ValueError, match="^" + re.escape(
        f"cron '{SKIPS}' fires at 01:59 and 03:00 on {day} in {zone} (the clocks skip an hour), "
        "1 minute apart; the floor is 5 minutes"
    ) + "$"):
        check_cron(SKIPS, zone, NEW_YEAR)


@pytest.mark.parametrize(
    ("cron", "zone", "message"),
    [
        ("0,58 2 * * *", "Europe/Berlin", "fires at 02:58 and 02:00 on 2027-10-31 in Europe/Berlin"),
        ("0,58 1 * * *", "America/New_York", "fires at 01:58 and 01:00 on 2027-11-07 in America/New_York"),
    ],
)
def test_a_cron_closer_than_the_floor_where_the_clocks_repeat_an_hour_is_refused(
    cron: str, zone: str, message: str
) -> None:
    """APScheduler fires in both passes of a repeated hour: xx:58 of the first and xx:00 of the second are 2 minutes apart."""
    with pytest.raises(ValueError, match="^" + re.escape(
        f"cron '{cron}' {message} (the clocks repeat an hour), 2 minutes apart; the floor is 5 minutes"
    ) + "$"):
        check_cron(cron, zone, NEW_YEAR)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_validation_refuses_it_at_the_next_change(zone: str) -> None:
    """A sync validates against the changes of the next two years from today: a workflow error at the cron."""
    [(where, message)] = issues(make(cron=SKIPS, timezone=zone))
    assert where == "spec.trigger.cron"
    assert re.fullmatch(
        re.escape(f"cron '{SKIPS}' fires at 01:59 and 03:00 on ") + r"\d{4}-03-\d{2}"
        + re.escape(f" in {zone} (the clocks skip an hour), 1 minute apart; the floor is 5 minutes"),
        message,
    ), message


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo"])
def test_the_same_cron_is_fine_where_the_clocks_never_change(zone: str) -> None:
    """Without daylight saving, 01:59 and 03:00 are an hour apart."""
    assert issues(make(cron=SKIPS, timezone=zone)) == []
    check_cron(SKIPS, zone, NEW_YEAR)


@pytest.mark.parametrize("cron", ["*/15 * * * *", "*/5 * * * *", "30 2 * * *", "0,55 1,2 * * *", "0 9 * * 1-5"])
@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"])
def test_ordinary_crons_are_fine_across_the_changes(cron: str, zone: str) -> None:
    """A change only moves fires that stay at least the floor apart (Lord Howe shifts by 30 minutes)."""
    assert issues(make(cron=cron, timezone=zone)) == []
    check_cron(cron, zone, NEW_YEAR)


def test_weekdays_are_crontab_numbers() -> None:
    """0 and 7 are Sunday, as for the scheduler: a Sunday cron meets the (Sunday) changes, a Monday one does not."""
    for sunday in ("0", "7", "sun"):
        with pytest.raises(ValueError, match="on 2027-03-28 in Europe/Berlin"):
            check_cron(f"0,59 1,3 * * {sunday}", "Europe/Berlin", NEW_YEAR)
    check_cron("0,59 1,3 * * 1", "Europe/Berlin", NEW_YEAR)
    assert issues(make(cron="0 9 * * 0-6")) == []  # a range from Sunday, every day of the week


# -- registration -----------------------------------------------------------------------------------


WF = "workflows.d/acme/{}.yaml"


def wf(name: str, trigger: str) -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n  enabled: true\n"
            f"  trigger: {trigger}\n  actions:\n    - {{id: note, type: set, vars: {{at: '{{{{ trigger.scheduled_at }}}}'}}}}\n")


@pytest.fixture
def k(tmp_path: Path, store_url: str) -> Iterator[Kit]:
    with kit(tmp_path, store_url) as made:
        yield made


@pytest.fixture
def schedules(k: Kit) -> Iterator[Schedules]:
    made = Schedules(k.engine)
    try:
        yield made
    finally:
        made.shutdown()


def bypass(k: Kit, key: str, **trigger: str) -> None:
    """Write ``trigger`` into the applied version of ``key`` as if validation never ran."""
    with k.store.tx() as conn:
        row = conn.execute(
            select(workflow_versions.c.id, workflow_versions.c.content)
            .join(workflows, workflows.c.id == workflow_versions.c.workflow_id)
            .where(workflows.c.key == key, workflow_versions.c.version == workflows.c.version)
        ).one()
        content = copy.deepcopy(row.content)
        content["spec"]["trigger"] = {"type": "schedule", **trigger}
        conn.execute(update(workflow_versions).where(workflow_versions.c.id == row.id).values(content=content))


def job_ids(schedules: Schedules) -> set[str]:
    return {job.id for job in schedules.scheduler.get_jobs()}


def test_registration_refuses_a_schedule_that_bypassed_validation(
    k: Kit, schedules: Schedules, caplog: pytest.LogCaptureFixture
) -> None:
    """A too-fast definition in the store gets no job, is in ``refused`` with the reason, and is warned about once."""
    k.deploy({WF.format("nightly"): wf("nightly", "{type: schedule, cron: '0 2 * * *', timezone: Europe/Berlin}"),
              WF.format("hasty"): wf("hasty", "{type: schedule, every: 1h}"),
              WF.format("daily"): wf("daily", "{type: schedule, cron: '30 6 * * *'}")})
    bypass(k, "acme/nightly", cron=SKIPS, timezone="Europe/Berlin")
    bypass(k, "acme/hasty", every="1m")
    with caplog.at_level(logging.WARNING, logger="controller.engine.scheduler"):
        schedules.start(paused=True)
        assert schedules.register() == 1
    assert job_ids(schedules) == {"schedule:acme/daily"}
    assert schedules.refused == {  # the engine's clock says 2026-01-05: its changes start in March 2026
        "acme/nightly": f"cron '{SKIPS}' fires at 01:59 and 03:00 on 2026-03-29 in Europe/Berlin "
                        "(the clocks skip an hour), 1 minute apart; the floor is 5 minutes",
        "acme/hasty": "every '1m' fires every 1 minute; the floor is 5 minutes",
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"refused to schedule acme/hasty@v1: {schedules.refused['acme/hasty']}",
                        f"refused to schedule acme/nightly@v1: {schedules.refused['acme/nightly']}"]


def test_a_registered_job_goes_when_its_definition_turns_too_fast(k: Kit, schedules: Schedules) -> None:
    """The check covers jobs already registered: a version edited in the store below the floor loses its job."""
    k.deploy({WF.format("nightly"): wf("nightly", "{type: schedule, cron: '0 2 * * *', timezone: America/New_York}")})
    schedules.start(paused=True)
    assert job_ids(schedules) == {"schedule:acme/nightly"} and schedules.refused == {}
    bypass(k, "acme/nightly", cron="0,58 1 * * *", timezone="America/New_York")
    assert schedules.register() == 0
    assert job_ids(schedules) == set() and schedules.next_run("acme/nightly") is None
    assert "on 2026-11-01 in America/New_York (the clocks repeat an hour)" in schedules.refused["acme/nightly"]
