"""Asking a running controller over its API (for `wfctl check --controller` and `wfctl restore`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from controller.errors import NotFoundError, SourceError
from controller.model.entries import DirectoryEntry
from controller.model.statuses import IN_FLIGHT, ordered


class ControllerClient:
    def __init__(self, url: str, token: str, *, timeout: float = 10.0, session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def in_flight(self, key: str) -> list[int]:
        """Ids of the workflow's running and waiting executions, as the controller sees them now."""
        ids: list[int] = []
        for status in ordered(IN_FLIGHT):
            data = self._get("/api/v1/executions", {"workflow": key, "status": status})
            items = data if isinstance(data, list) else data.get("executions", data.get("items", []))
            ids += [int(item["id"]) for item in items]
        return sorted(ids)

    def directories(self, accounts: list[str]) -> dict[str, dict[str, DirectoryEntry]]:
        """``account -> ref -> entry`` of the accounts whose directory the controller has loaded."""
        found: dict[str, dict[str, DirectoryEntry]] = {}
        for account in accounts:
            try:
                data = self._get(f"/api/v1/accounts/{account}/directory", {})
            except NotFoundError:
                continue  # no directory loaded there: the controller does not check its references either
            try:
                entries = [DirectoryEntry(str(e["kind"]), str(e["id"]), name=str(e.get("name", "")),
                                          status=str(e["status"])) for e in data["entries"]]
            except (KeyError, TypeError):
                raise SourceError(f"controller {self.url} answered an unexpected body for the directory of "
                                  f"{account}; is it a wfctl controller of this version?") from None
            found[account] = {entry.ref: entry for entry in entries}
        return found

    def version(self, key: str, version: int) -> dict[str, Any]:
        """One version's row (commit, path, ...) from the controller's history of the workflow."""
        account, name = key.split("/", 1)
        for row in self._get(f"/api/v1/workflows/{account}/{name}/versions", {})["versions"]:
            if row["version"] == version:
                return dict(row)
        raise NotFoundError(f"{key} has no version {version} on {self.url}; see `wfctl history {key}`", workflow=key)

    def replay(self, key: str, source: str, *, path: str = "", limit: int, since: str | None = None,
               like: str | None = None, calls: dict[str, str] | None = None) -> dict[str, Any]:
        """The controller's impact preview of the proposed ``source`` of workflow ``key`` (its report); ``calls``:
        the proposed files of the account's other changed workflows, by name."""
        account, name = key.split("/", 1)
        body = {"source": source, "path": path, "limit": limit, "since": since, "like": like, "calls": calls or {}}
        return dict(self._send("POST", f"/api/v1/workflows/{account}/{name}/replay", json=body,
                               timeout=max(self.timeout, 120.0)))

    def _get(self, path: str, params: dict[str, str]) -> Any:
        return self._send("GET", path, params=params)

    def _send(self, method: str, path: str, **options: Any) -> Any:
        where = f"{self.url}{quote(path)}"
        options.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, where, **options)
        except requests.RequestException as e:
            raise SourceError(f"controller {self.url} did not answer: {type(e).__name__}") from None
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            kind = NotFoundError if response.status_code == 404 else SourceError  # callers may expect "none"
            raise kind(f"controller {self.url} answered {response.status_code} for {path}: {message}")
        return response.json()
