"""GitSource.read_blobs: many blobs through one cat-file --batch of its own, the same bytes as read_blob, in
order, and the same refusals."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
from gitutil import commit_files, make_repo

from controller.errors import SourceError
from controller.source import GitSource

ROOT = "workflows.d"


def _cat_files() -> int:
    """This process's git cat-file children still running (Linux /proc)."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        count += int(fields[1]) == os.getpid() and fields[0] != "Z" and b"cat-file" in command
    return count


def test_read_blobs_gives_what_read_blob_gives_in_order(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    files = {f"{ROOT}/acme/w{n:03d}.yaml": f"name: w{n}\n" + "x" * (n * 97 % 5000) + "\n" for n in range(300)}
    files[f"{ROOT}/acme/empty.yaml"] = ""
    files[f"{ROOT}/acme/binary.yaml"] = "\x00\n\n\r\nlast line without newline"
    big = "y" * 300_000  # more than a pipe holds: git waits for it to be read, then answers the rest
    files[f"{ROOT}/acme/big.yaml"] = big
    sha = commit_files(repo, files, "many")
    with GitSource(str(tmp_path / "repo"), data_dir=tmp_path / "data") as source:
        listed = source.list_files(sha)
        shas = [listed[path] for path in sorted(listed)] * 2  # each twice: a sha may come again
        assert list(source.read_blobs(iter(shas))) == [source.read_blob(s) for s in shas]
        assert source.read_blob(listed[f"{ROOT}/acme/big.yaml"]) == big.encode()
        assert list(source.read_blobs([])) == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts git processes in /proc")
def test_read_blobs_refuses_what_read_blob_refuses_and_stops_its_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    sha = commit_files(repo, {"f": "x", "g": "y"}, "One")
    with GitSource(str(tmp_path / "repo"), root="", data_dir=tmp_path / "data") as source:
        good = source.list_files(sha)["f"]
        before = _cat_files()
        for bad, message in [("nope", "not a blob sha"), ("0" * 40, "has no object"), (sha, "is a commit")]:
            with pytest.raises(SourceError, match=message):
                list(source.read_blobs([good, bad, good]))
        started = source.read_blobs([good] * 100)
        assert next(started) == b"x"
        started.close()  # the caller left early
        del started
        gc.collect()
        assert _cat_files() == before  # every batch process was reaped
        assert source.read(sha, "g") == b"y"  # the persistent cat-file is still in step
