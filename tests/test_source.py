"""The git source against real repositories: commits, diffs, files, symlinks, remotes, branches."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from git import Repo
from gitutil import Symlink, clone_repo, commit_files, git, make_repo
from servers import children, until

from controller.errors import SourceError, UsageError
from controller.source import Change, GitSource, safe_worktree_path
from controller.source.records import LOG_FORMAT, iter_log_records, iter_tokens

ROOT = "workflows.d"
WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))

OpenSource = Callable[..., GitSource]


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def open_source(tmp_path: Path) -> Iterator[OpenSource]:
    """Open GitSources on demand (data_dir in tmp_path) and close them all after the test."""
    opened: list[GitSource] = []

    def _open(location: Path | str, **options: object) -> GitSource:
        options.setdefault("data_dir", tmp_path / "data")
        source = GitSource(str(location), **options)  # type: ignore[arg-type]
        opened.append(source)
        return source

    yield _open
    for source in opened:
        source.close()


@pytest.fixture
def origin(tmp_path: Path) -> tuple[str, Repo]:
    """A bare origin reachable by a file:// URL, and a working copy that has pushed one commit."""
    make_repo(tmp_path / "origin.git", bare=True)
    url = (tmp_path / "origin.git").as_uri()
    work = clone_repo(url, tmp_path / "work")
    commit_files(work, {f"{ROOT}/acme/a.yaml": "v: 1\n"}, "First")
    git(tmp_path / "work", "push", "-q", "origin", "main")
    return url, work


def _path(repo: Repo) -> Path:
    return Path(str(repo.working_tree_dir))


# -- commits -----------------------------------------------------------------------------------


def test_resolve_head_reports_author_email_time_subject_and_message(
    repo: Repo, open_source: OpenSource
) -> None:
    """resolve_head() describes the branch's newest commit: sha, author, e-mail, time, subject, body."""
    commit_files(repo, {f"{ROOT}/acme/a.yaml": "v: 1\n"}, "Seed")
    sha = commit_files(
        repo,
        {f"{ROOT}/acme/a.yaml": "v: 2\n"},
        "Raise the limit\n\nBecause the team asked.\n",
        author_name="Ada Lovelace",
        author_email="ada@example.com",
        when=WHEN,
    )
    head = open_source(_path(repo)).resolve_head()
    assert head.sha == sha
    assert (head.author, head.author_email) == ("Ada Lovelace", "ada@example.com")
    assert head.committed_at == WHEN and head.committed_at.tzinfo is not None
    assert head.summary == "Raise the limit"
    assert head.message == "Raise the limit\n\nBecause the team asked."
    assert head.parents == (git(_path(repo), "rev-parse", "HEAD~1"),)


def test_commit_accepts_short_shas_and_matches_the_log(repo: Repo, open_source: OpenSource) -> None:
    """commit() resolves any revision to the same CommitInfo that first_parent_commits() reports."""
    sha = commit_files(repo, {"x": "1"}, "Only commit\n\nwith body", when=WHEN)
    source = open_source(_path(repo))
    assert source.commit(sha[:8]) == source.commit(sha) == source.first_parent_commits(None, sha)[0]
    with pytest.raises(SourceError, match="has no commit 'deadbeef'"):
        source.commit("deadbeef")


def test_first_parent_commits_are_oldest_first_and_since_is_exclusive(
    repo: Repo, open_source: OpenSource
) -> None:
    """first_parent_commits(since, until) lists the commits after since up to until, oldest first."""
    shas = [commit_files(repo, {"f": str(n)}, f"Commit {n}") for n in range(4)]
    source = open_source(_path(repo))
    assert [c.sha for c in source.first_parent_commits(None, shas[-1])] == shas
    assert [c.sha for c in source.first_parent_commits(shas[1], shas[-1])] == shas[2:]
    assert [c.summary for c in source.first_parent_commits(shas[0], shas[2])] == ["Commit 1", "Commit 2"]
    assert source.first_parent_commits(shas[-1], shas[-1]) == []


def test_merged_branch_commits_are_not_on_the_first_parent_chain(repo: Repo, open_source: OpenSource) -> None:
    """A --no-ff merge appears as one commit; the merged branch's own commits are left out."""
    top = _path(repo)
    base = commit_files(repo, {"f": "0"}, "Base")
    git(top, "switch", "-q", "-c", "feature")
    commit_files(repo, {"g": "1"}, "Feature 1")
    feature_tip = commit_files(repo, {"g": "2"}, "Feature 2")
    git(top, "switch", "-q", "main")
    main_tip = commit_files(repo, {"f": "1"}, "Main 1")
    git(top, "merge", "-q", "--no-ff", "-m", "Merge feature", "feature")
    merge = git(top, "rev-parse", "HEAD")

    chain = open_source(top).first_parent_commits(None, merge)
    assert [c.sha for c in chain] == [base, main_tip, merge]
    assert chain[-1].parents == (main_tip, feature_tip)
    assert [c.sha for c in open_source(top).first_parent_commits(base, merge)] == [main_tip, merge]


# -- changed paths, files and reads ------------------------------------------------------------


def test_changed_paths_reports_add_modify_delete_and_rename_under_root_only(
    repo: Repo, open_source: OpenSource
) -> None:
    """changed_paths() detects A, M, D and R (with old_path) and ignores paths outside the root."""
    body = "kind: workflow\nsteps:\n" + "".join(f"  - step {n}\n" for n in range(20))
    before = commit_files(
        repo,
        {
            f"{ROOT}/acme/keep.yaml": "a: 1\n",
            f"{ROOT}/acme/gone.yaml": "b: 1\n",
            f"{ROOT}/acme/old.yaml": body,
        },
        "Before",
    )
    after = commit_files(
        repo,
        {
            f"{ROOT}/acme/keep.yaml": "a: 2\n",
            f"{ROOT}/acme/gone.yaml": None,
            f"{ROOT}/acme/old.yaml": None,
            f"{ROOT}/beta/new name.yaml": body,
            f"{ROOT}/beta/added.yaml": "c: 1\n",
            "README.md": "outside the root\n",
            "workflows.d-other/x.yaml": "a sibling folder, not the root\n",
        },
        "After",
    )
    changes = open_source(_path(repo)).changed_paths(before, after)
    assert sorted(changes, key=lambda c: c.path) == [
        Change("D", f"{ROOT}/acme/gone.yaml"),
        Change("M", f"{ROOT}/acme/keep.yaml"),
        Change("A", f"{ROOT}/beta/added.yaml"),
        Change("R", f"{ROOT}/beta/new name.yaml", f"{ROOT}/acme/old.yaml"),
    ]


def test_changed_paths_carry_the_new_blob_so_a_changed_file_reads_without_a_tree_lookup(
    repo: Repo, open_source: OpenSource
) -> None:
    """Each change but a delete names the new side's mode and blob: reading that blob gives the file at ``b``."""
    before = commit_files(repo, {f"{ROOT}/acme/a.yaml": "a: 1\n", f"{ROOT}/acme/b.yaml": "b: 1\n"}, "Before")
    after = commit_files(repo, {f"{ROOT}/acme/a.yaml": "a: 2\n", f"{ROOT}/acme/b.yaml": None,
                                f"{ROOT}/acme/link.yaml": Symlink("a.yaml")}, "After")
    source = open_source(_path(repo))
    changes = {c.path: c for c in source.changed_paths(before, after)}
    assert changes[f"{ROOT}/acme/b.yaml"].entry is None
    modified, link = changes[f"{ROOT}/acme/a.yaml"].entry, changes[f"{ROOT}/acme/link.yaml"].entry
    assert modified is not None and not modified.is_symlink
    assert source.read_blob(modified.sha) == source.read(after, f"{ROOT}/acme/a.yaml") == b"a: 2\n"
    assert link is not None and link.is_symlink and source.read_blob(link.sha) == b"a.yaml"


def test_changed_paths_from_nothing_lists_every_file_under_root_as_added(
    repo: Repo, open_source: OpenSource
) -> None:
    """changed_paths(None, b) reports every file under the root at b as 'A', and nothing else."""
    sha = commit_files(repo, {f"{ROOT}/a/1.yaml": "1", f"{ROOT}/b/2.yaml": "2", "other/3.yaml": "3"}, "Seed")
    assert open_source(_path(repo)).changed_paths(None, sha) == [
        Change("A", f"{ROOT}/a/1.yaml"),
        Change("A", f"{ROOT}/b/2.yaml"),
    ]


def test_a_missing_root_gives_empty_results_not_errors(repo: Repo, open_source: OpenSource) -> None:
    """When the root folder does not exist at a commit, listings and diffs are simply empty."""
    first = commit_files(repo, {"README.md": "no workflows yet"}, "Start")
    second = commit_files(repo, {"README.md": "still none"}, "Edit")
    source = open_source(_path(repo))
    assert source.list_files(second) == {}
    assert source.changed_paths(None, second) == []
    assert source.changed_paths(first, second) == []


def test_list_files_maps_paths_to_blob_shas_with_spaces_and_non_ascii(
    repo: Repo, open_source: OpenSource
) -> None:
    """list_files() returns every file under the root (odd names included) with its blob sha."""
    names = [
        f"{ROOT}/acme/with space.yaml",
        f"{ROOT}/équipe/tâche.yaml",
        f"{ROOT}/new\nline.yaml",
        f"{ROOT}/p.yaml",
    ]
    sha = commit_files(
        repo, {name: f"name: {n}\n" for n, name in enumerate(names)} | {"top.yaml": "x"}, "Odd names"
    )
    source = open_source(_path(repo))
    files = source.list_files(sha)
    assert sorted(files) == sorted(names)
    for name in names:
        assert files[name] == git(_path(repo), "rev-parse", f"{sha}:{name}")
        assert source.read_blob(files[name]) == source.read(sha, name)


def test_read_returns_the_content_at_an_older_commit(repo: Repo, open_source: OpenSource) -> None:
    """read(commit, path) returns the file as it was at that commit, not as it is now."""
    old = commit_files(repo, {f"{ROOT}/a.yaml": "version: 1\n"}, "One")
    new = commit_files(repo, {f"{ROOT}/a.yaml": "version: 2\n"}, "Two")
    commit_files(repo, {f"{ROOT}/a.yaml": None}, "Remove")
    source = open_source(_path(repo))
    assert source.read(old, f"{ROOT}/a.yaml") == b"version: 1\n"
    assert source.read(new, f"{ROOT}/a.yaml") == b"version: 2\n"
    with pytest.raises(SourceError, match="no such file"):
        source.read("HEAD", f"{ROOT}/a.yaml")


def _cat_files() -> set[int]:
    """The git cat-file processes this test process started."""
    return set(children(os.getpid(), b"cat-file"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc (Linux)")
def test_a_resting_source_keeps_no_git_process_and_reads_again(repo: Repo, open_source: OpenSource) -> None:
    """rest() stops the persistent cat-file (serve calls it after each reconcile pass); the next read starts it."""
    commit_files(repo, {f"{ROOT}/a.yaml": "version: 1\n"}, "One")
    before = _cat_files()
    source = open_source(_path(repo))
    assert source.read("HEAD", f"{ROOT}/a.yaml") == b"version: 1\n"
    assert _cat_files() - before
    source.rest()
    assert until(lambda: not _cat_files() - before)
    assert source.read("HEAD", f"{ROOT}/a.yaml") == b"version: 1\n"


def test_a_dirty_working_tree_is_never_seen(repo: Repo, open_source: OpenSource) -> None:
    """Uncommitted edits and untracked files do not show up: everything is read from commits."""
    sha = commit_files(repo, {f"{ROOT}/a.yaml": "committed\n"}, "Commit")
    (_path(repo) / ROOT / "a.yaml").write_text("edited, not committed\n")
    (_path(repo) / ROOT / "untracked.yaml").write_text("never added\n")
    source = open_source(_path(repo))
    assert source.resolve_head().sha == sha
    assert source.read(sha, f"{ROOT}/a.yaml") == b"committed\n"
    assert list(source.list_files(sha)) == [f"{ROOT}/a.yaml"]


def test_read_blob_refuses_bad_and_unknown_shas(repo: Repo, open_source: OpenSource) -> None:
    """read_blob() raises SourceError for a malformed sha, a missing object or a non-blob."""
    sha = commit_files(repo, {"f": "x"}, "One")
    source = open_source(_path(repo))
    for bad, message in [("nope", "not a blob sha"), ("0" * 40, "has no object"), (sha, "is a commit")]:
        with pytest.raises(SourceError, match=message):
            source.read_blob(bad)
    assert source.read(sha, "f") == b"x"  # the persistent cat-file process is still in step


# -- symlinks ----------------------------------------------------------------------------------


def test_symlinks_inside_the_repository_are_followed_within_the_commit(
    repo: Repo, open_source: OpenSource
) -> None:
    """A symlink (or a chain of them) to a file elsewhere in the repo reads that file at the same commit."""
    sha = commit_files(
        repo,
        {
            "shared/base.yaml": "shared: true\n",
            f"{ROOT}/acme/base.yaml": Symlink("../../shared/base.yaml"),
            f"{ROOT}/beta/chain.yaml": Symlink("../acme/base.yaml"),
        },
        "Links",
    )
    commit_files(repo, {"shared/base.yaml": "shared: later\n"}, "Change the target later")
    source = open_source(_path(repo))
    assert source.read(sha, f"{ROOT}/acme/base.yaml") == b"shared: true\n"
    assert source.read(sha, f"{ROOT}/beta/chain.yaml") == b"shared: true\n"
    entries = source.entries(sha)
    assert entries[f"{ROOT}/acme/base.yaml"].is_symlink
    assert entries[f"{ROOT}/acme/base.yaml"].mode == "120000"
    assert f"{ROOT}/beta/chain.yaml" in source.list_files(sha)


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../outside.yaml"])
def test_a_symlink_leaving_the_repository_raises(repo: Repo, open_source: OpenSource, target: str) -> None:
    """A symlink whose target is absolute or climbs out of the repository is refused with the fix."""
    sha = commit_files(repo, {f"{ROOT}/acme/evil.yaml": Symlink(target)}, "Evil link")
    expected = (
        f"{ROOT}/acme/evil.yaml: symlink points outside the repository ({target}); replace it with the file"
    )
    with pytest.raises(SourceError) as caught:
        open_source(_path(repo)).read(sha, f"{ROOT}/acme/evil.yaml")
    assert str(caught.value) == expected


def test_a_symlink_loop_raises_instead_of_spinning(repo: Repo, open_source: OpenSource) -> None:
    """Two symlinks pointing at each other end in a SourceError after a few hops."""
    sha = commit_files(
        repo, {f"{ROOT}/a.yaml": Symlink("b.yaml"), f"{ROOT}/b.yaml": Symlink("a.yaml")}, "Loop"
    )
    with pytest.raises(SourceError, match="symlinks in a row"):
        open_source(_path(repo)).read(sha, f"{ROOT}/a.yaml")


def test_safe_worktree_path_allows_inside_and_refuses_escaping_symlinks(tmp_path: Path) -> None:
    """safe_worktree_path() resolves symlinks and refuses a real path outside the repository."""
    top = tmp_path / "checkout"
    (top / ROOT).mkdir(parents=True)
    (top / ROOT / "a.yaml").write_text("a")
    (top / ROOT / "inside.yaml").symlink_to("a.yaml")
    (tmp_path / "secret.yaml").write_text("s")
    (top / ROOT / "escape.yaml").symlink_to(tmp_path / "secret.yaml")

    assert safe_worktree_path(top, Path(ROOT) / "inside.yaml") == (top / ROOT / "a.yaml").resolve()
    assert safe_worktree_path(top, top / ROOT / "a.yaml") == (top / ROOT / "a.yaml").resolve()
    with pytest.raises(SourceError, match="symlink points outside the repository"):
        safe_worktree_path(top, Path(ROOT) / "escape.yaml")
    with pytest.raises(SourceError, match="is outside the repository"):
        safe_worktree_path(top, tmp_path / "secret.yaml")


# -- opening: locations, branches, errors ------------------------------------------------------


def test_branch_defaults_to_the_current_one_and_can_be_chosen(repo: Repo, open_source: OpenSource) -> None:
    """With no branch the checked-out one is followed; a named branch is followed instead."""
    top = _path(repo)
    main = commit_files(repo, {f"{ROOT}/a.yaml": "main\n"}, "Main")
    git(top, "switch", "-q", "-c", "release")
    release = commit_files(repo, {f"{ROOT}/a.yaml": "release\n"}, "Release")
    git(top, "switch", "-q", "main")

    default = open_source(top)
    assert (default.branch, default.resolve_head().sha) == ("main", main)
    chosen = open_source(top, branch="release")
    assert (chosen.branch, chosen.resolve_head().sha) == ("release", release)
    assert chosen.read(chosen.resolve_head().sha, f"{ROOT}/a.yaml") == b"release\n"


def test_an_unknown_branch_names_the_existing_ones(repo: Repo, open_source: OpenSource) -> None:
    """Asking for a branch that does not exist raises SourceError listing the branches there are."""
    commit_files(repo, {"f": "x"}, "One")
    with pytest.raises(SourceError, match="has no branch 'nope'; pass one of: main"):
        open_source(_path(repo), branch="nope")
    with pytest.raises(SourceError, match="not a valid branch name"):
        open_source(_path(repo), branch="main..other")


def test_not_a_repository_and_missing_paths_raise(tmp_path: Path, open_source: OpenSource) -> None:
    """A folder outside any repository, or a path that does not exist, raises SourceError saying so."""
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError, match="is not inside a git repository"):
        open_source(tmp_path / "plain")
    with pytest.raises(SourceError, match="no such folder"):
        open_source(tmp_path / "missing")


def test_an_empty_repository_raises(repo: Repo, open_source: OpenSource) -> None:
    """A repository without commits raises SourceError asking for a first commit."""
    with pytest.raises(SourceError, match="has no commits yet; push a first commit to 'main'"):
        open_source(_path(repo))


def test_a_detached_head_without_a_branch_raises(repo: Repo, open_source: OpenSource) -> None:
    """When HEAD is detached and no branch is given, SourceError asks for the branch to follow."""
    sha = commit_files(repo, {"f": "x"}, "One")
    git(_path(repo), "checkout", "-q", "--detach", sha)
    with pytest.raises(SourceError, match="detached; pass the branch"):
        open_source(_path(repo))
    assert open_source(_path(repo), branch="main").resolve_head().sha == sha


def test_a_subfolder_of_the_work_tree_opens_the_repository(repo: Repo, open_source: OpenSource) -> None:
    """A location inside the work tree finds the repository; the root stays relative to its top."""
    sha = commit_files(repo, {f"{ROOT}/acme/a.yaml": "a\n"}, "One")
    source = open_source(_path(repo) / ROOT / "acme")
    assert source.root == ROOT
    assert source.resolve_head().sha == sha
    assert list(source.list_files(sha)) == [f"{ROOT}/acme/a.yaml"]


def test_the_root_is_normalized_and_must_stay_inside(repo: Repo, open_source: OpenSource) -> None:
    """The root loses ./ and trailing slashes, '' or '.' means everything, and ../x is a UsageError."""
    sha = commit_files(repo, {f"{ROOT}/a.yaml": "a", "top.yaml": "t"}, "One")
    assert open_source(_path(repo), root=f"./{ROOT}/").root == ROOT
    assert sorted(open_source(_path(repo), root=".").list_files(sha)) == ["top.yaml", f"{ROOT}/a.yaml"]
    with pytest.raises(UsageError, match="not inside the repository"):
        open_source(_path(repo), root="../elsewhere")


# -- remote sources ----------------------------------------------------------------------------


def test_a_remote_url_is_cloned_and_fetched_on_each_resolve(
    tmp_path: Path, origin: tuple[str, Repo], open_source: OpenSource
) -> None:
    """A file:// source is cloned under data_dir/sources, and resolve_head() fetches new pushes."""
    url, work = origin
    source = open_source(url)
    first = source.resolve_head()
    assert first.sha == git(_path(work), "rev-parse", "HEAD")
    assert source.branch == "main"
    assert [p.name for p in (tmp_path / "data" / "sources").iterdir()] != []

    pushed = commit_files(work, {f"{ROOT}/acme/a.yaml": "v: 2\n"}, "Second")
    git(_path(work), "push", "-q", "origin", "main")
    head = source.resolve_head()
    assert head.sha == pushed
    assert source.read(head.sha, f"{ROOT}/acme/a.yaml") == b"v: 2\n"
    assert source.changed_paths(first.sha, head.sha) == [Change("M", f"{ROOT}/acme/a.yaml")]

    # A restart reuses the clone and fetches what it missed.
    newer = commit_files(work, {f"{ROOT}/acme/b.yaml": "b\n"}, "Third")
    git(_path(work), "push", "-q", "origin", "main")
    assert open_source(url).resolve_head().sha == newer
    assert len(list((tmp_path / "data" / "sources").iterdir())) == 1


def test_a_remote_branch_can_be_chosen_and_unknown_ones_raise(
    origin: tuple[str, Repo], open_source: OpenSource
) -> None:
    """A remote source follows the remote's HEAD branch by default, or the branch it is given."""
    url, work = origin
    git(_path(work), "switch", "-q", "-c", "staging")
    staged = commit_files(work, {f"{ROOT}/acme/a.yaml": "staging\n"}, "Staging")
    git(_path(work), "push", "-q", "origin", "staging")
    assert open_source(url).branch == "main"
    assert open_source(url, branch="staging").resolve_head().sha == staged
    with pytest.raises(SourceError, match="has no branch 'prod'; pass one of: main, staging"):
        open_source(url, branch="prod")


def test_is_ancestor_is_false_after_a_force_push(origin: tuple[str, Repo], open_source: OpenSource) -> None:
    """After history is rewritten and force-pushed, the old head is no ancestor of the new one."""
    url, work = origin
    top = _path(work)
    base = git(top, "rev-parse", "HEAD")
    old_head = commit_files(work, {f"{ROOT}/acme/a.yaml": "doomed\n"}, "Doomed")
    git(top, "push", "-q", "origin", "main")
    source = open_source(url)
    assert source.resolve_head().sha == old_head
    assert source.is_ancestor(base, old_head)

    git(top, "reset", "-q", "--hard", base)
    new_head = commit_files(work, {f"{ROOT}/acme/a.yaml": "rewritten\n"}, "Rewritten")
    git(top, "push", "-q", "--force", "origin", "main")
    assert source.resolve_head().sha == new_head
    assert not source.is_ancestor(old_head, new_head)
    assert source.is_ancestor(base, new_head)
    assert source.is_ancestor(new_head, new_head)


def test_is_ancestor_is_false_when_the_commit_was_garbage_collected(
    repo: Repo, open_source: OpenSource
) -> None:
    """A commit that no longer exists at all is reported as not an ancestor, not as an error."""
    top = _path(repo)
    base = commit_files(repo, {"f": "0"}, "Base")
    gone = commit_files(repo, {"f": "1"}, "Gone")
    git(top, "reset", "-q", "--hard", base)
    head = commit_files(repo, {"f": "2"}, "New")
    git(top, "reflog", "expire", "--expire=now", "--all")
    git(top, "gc", "-q", "--prune=now")
    source = open_source(top)
    assert not source.is_ancestor(gone, head)
    assert not source.is_ancestor("f" * 40, head)
    with pytest.raises(SourceError, match="has no commit"):
        source.is_ancestor(base, "f" * 40)


def test_clone_and_fetch_failures_raise_source_errors(tmp_path: Path, origin: tuple[str, Repo]) -> None:
    """An unreachable URL fails to clone, and a vanished remote fails to fetch, with SourceError."""
    with pytest.raises(SourceError, match="cannot clone .*check the URL"):
        GitSource((tmp_path / "nowhere.git").as_uri(), data_dir=tmp_path / "data")
    assert list((tmp_path / "data" / "sources").iterdir()) == []  # no half-made clone left behind

    url, _ = origin
    with GitSource(url, data_dir=tmp_path / "data") as source:
        (tmp_path / "origin.git").rename(tmp_path / "moved.git")
        with pytest.raises(SourceError, match="cannot fetch .*check the URL"):
            source.resolve_head()


def test_credentials_in_a_url_never_reach_the_message(tmp_path: Path) -> None:
    """The user and password of a URL are masked in error messages."""
    url = "https://alice:s3cret@127.0.0.1:9/none.git"
    with pytest.raises(SourceError) as caught:
        GitSource(url, data_dir=tmp_path / "data")
    assert "s3cret" not in str(caught.value) and "***@127.0.0.1" in str(caught.value)


# -- attribution -------------------------------------------------------------------------------


def test_last_changes_finds_the_newest_commit_touching_each_path(repo: Repo, open_source: OpenSource) -> None:
    """last_changes() attributes each path to the newest first-parent commit that touched it."""
    a, b, c = (f"{ROOT}/acme/{name}.yaml" for name in "abc")
    first = commit_files(repo, {a: "1", b: "1", c: "1"}, "All three")
    second = commit_files(repo, {b: "2"}, "Touch b")
    third = commit_files(repo, {a: "3"}, "Touch a")
    commit_files(repo, {"README.md": "unrelated"}, "Unrelated")
    found = open_source(_path(repo)).last_changes("HEAD", [a, b, c, f"{ROOT}/never.yaml"])
    assert {path: info.sha for path, info in found.items()} == {a: third, b: second, c: first}
    assert found[b].summary == "Touch b"


def test_last_changes_credits_a_merge_for_its_branch_changes(repo: Repo, open_source: OpenSource) -> None:
    """A change made on a merged branch is attributed to the merge commit on the first-parent chain."""
    top = _path(repo)
    path = f"{ROOT}/acme/a.yaml"
    commit_files(repo, {path: "1"}, "Base")
    git(top, "switch", "-q", "-c", "feature")
    commit_files(repo, {path: "2"}, "On the branch")
    git(top, "switch", "-q", "main")
    commit_files(repo, {"other": "x"}, "Meanwhile on main")
    git(top, "merge", "-q", "--no-ff", "-m", "Merge feature", "feature")
    merge = git(top, "rev-parse", "HEAD")
    assert open_source(top).last_changes(merge, [path])[path].sha == merge


def test_last_changes_handles_many_paths_in_one_walk(repo: Repo, open_source: OpenSource) -> None:
    """With more paths than fit on a command line, the root is walked and every path still found."""
    paths = [f"{ROOT}/bulk/{n:03d}.yaml" for n in range(100)]
    first = commit_files(repo, dict.fromkeys(paths, "1"), "Bulk")
    later = commit_files(repo, {paths[7]: "2", "elsewhere.yaml": "x"}, "One more")
    found = open_source(_path(repo)).last_changes(later, paths)
    assert len(found) == 100
    assert found[paths[7]].sha == later
    assert {info.sha for path, info in found.items() if path != paths[7]} == {first}


# -- parsing -----------------------------------------------------------------------------------


def test_log_parsing_does_not_depend_on_how_output_is_chunked(repo: Repo) -> None:
    """The streaming log parser yields the same records whatever the read boundaries are."""
    commit_files(repo, {"a b": "1", "é": "1"}, "One\n\nbody")
    commit_files(repo, {"é": "2"}, "Two")
    output = repo.git.log("-z", "--name-only", f"--format={LOG_FORMAT}", stdout_as_string=False)
    whole = list(iter_log_records(iter_tokens([output])))
    bytewise = list(iter_log_records(iter_tokens(output[i : i + 1] for i in range(len(output)))))
    assert whole == bytewise
    assert [files for _, files in whole] == [["é"], ["a b", "é"]]
    assert whole[1][0].committed_at.tzinfo == UTC
