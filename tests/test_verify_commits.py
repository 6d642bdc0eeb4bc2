"""Commit verification (--verify-commits) with real signed commits: ssh-keygen keys, and GPG where gpg is present.

Every commit here is signed (or not) by git itself, with keys made in tmp_path; the controller checks
them through git against an allowed-signers file or a throwaway GnuPG home.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from git import Repo
from gitutil import commit_files, git, make_repo
from httpkit import WORKFLOWS, http_kit
from servers import until
from wfyaml import workflow

from controller.cli import cli
from controller.config import load_config
from controller.engine.runtime import Engine
from controller.errors import NotFoundError, UnverifiedCommit, UsageError
from controller.reconcile.reconciler import Reconciler
from controller.reconcile.restore import restore
from controller.security import secrets
from controller.service import Controller, ServeOptions
from controller.settings import Settings
from controller.source import GitSource
from controller.source.verify import Policy, Signature, judge, parse_signer, policy
from controller.store import Store, open_store, views
from webhooks import create_app

A = "workflows.d/acme/a.yaml"
B = "workflows.d/beta/b.yaml"


@dataclass
class Key:
    """An ed25519 key made by ssh-keygen: its private key file, public line and SHA256 fingerprint."""

    path: Path
    public: str
    fingerprint: str


def make_key(folder: Path, name: str) -> Key:
    path = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    listed = subprocess.run(["ssh-keygen", "-lf", f"{path}.pub"], check=True, capture_output=True, text=True)
    return Key(path, (folder / f"{name}.pub").read_text().strip(), listed.stdout.split()[1])


@dataclass
class Env:
    path: Path
    repo: Repo
    store: Store
    url: str
    data_dir: Path
    allowed: Path  # allowed_signers: alice and bob, not mallory
    alice: Key
    bob: Key
    mallory: Key

    def commit(self, files: dict[str, str | None], message: str, key: Key | None) -> str:
        """A commit signed by ``key`` (git's own ssh signing), or unsigned when None."""
        if key is None:
            git(self.path, "config", "commit.gpgsign", "false")
        else:
            git(self.path, "config", "commit.gpgsign", "true")
            git(self.path, "config", "user.signingkey", str(key.path))
        return commit_files(self.repo, files, message)

    def policy(self, mode: str, accounts: dict[str, list[str]] | None = None) -> Policy:
        found = policy(mode, self.allowed, None, accounts or {}, "config.yaml")
        assert found is not None
        return found

    def sync(self, mode: str = "head", accounts: dict[str, list[str]] | None = None) -> Any:
        with GitSource(str(self.path), data_dir=self.data_dir) as source:
            return Reconciler(source, self.store, location=str(self.path),
                              verification=self.policy(mode, accounts)).sync()

    def versions(self, key: str) -> list[tuple[int, str, str | None]]:
        """(version, commit, signer) newest first; none before the workflow's first sync."""
        with self.store.read() as conn:
            try:
                return [(v["version"], v["commit"], v["signer"]) for v in views.history(conn, key)]
            except NotFoundError:
                return []

    def source(self) -> dict[str, Any]:
        with self.store.read() as conn:
            return dict(views.status(conn)["source"])

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.source()["conditions"] if c["type"] == kind)

    def wfctl(self, *args: str, env: dict[str, str] | None = None) -> Any:
        base = ["--repo", str(self.path), "--data-dir", str(self.data_dir), "--db", self.url]
        return CliRunner().invoke(cli, [*base, *args], env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Key]:
    folder = tmp_path_factory.mktemp("keys")
    return {name: make_key(folder, name) for name in ("alice", "bob", "mallory")}


@pytest.fixture
def env(tmp_path: Path, keys: dict[str, Key], store_url: str) -> Iterator[Env]:
    path = tmp_path / "repo"
    repo = make_repo(path)
    git(path, "config", "gpg.format", "ssh")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"alice@acme.test {keys['alice'].public}\nbob@beta.test {keys['bob'].public}\n")
    store = open_store(store_url)
    yield Env(path, repo, store, store_url, tmp_path / "data", allowed, keys["alice"], keys["bob"], keys["mallory"])
    store.close()


def test_a_signed_head_applies_records_its_signer_and_history_shows_it(env: Env) -> None:
    """A head signed by an allowed key applies; SourceVerified=True names the signer, the versions record it."""
    first = env.commit({A: workflow("a")}, "Add a", env.alice)
    env.sync()
    second = env.commit({A: workflow("a", subject="Hi")}, "Reword a", env.alice)
    env.sync()
    assert env.versions("acme/a") == [(2, second, "alice@acme.test"), (1, first, "alice@acme.test")]
    verified = env.condition("SourceVerified")
    assert verified["status"] == "True"
    assert f"{second[:12]} signed by alice@acme.test ({env.alice.fingerprint})" in verified["message"]
    assert env.condition("Ready")["status"] == "True"
    history = env.wfctl("history", "acme/a")
    assert history.exit_code == 0
    assert f"signed by alice@acme.test ({env.alice.fingerprint})" in history.stdout.splitlines()[0]
    audit = env.wfctl("audit", "acme/a", "--json")
    assert [(e["action"], e["signing_key"]) for e in json.loads(audit.stdout)] == [
        ("updated", env.alice.fingerprint), ("created", env.alice.fingerprint)]


def test_an_unsigned_head_is_not_applied_and_the_last_verified_state_stays(env: Env) -> None:
    """An unsigned head changes nothing in the store; SourceVerified=False names the commit; a signed push moves on."""
    first = env.commit({A: workflow("a")}, "Add a", env.alice)
    env.sync()
    unsigned = env.commit({A: workflow("a", subject="Sneaky")}, "Unsigned edit", None)
    with pytest.raises(UnverifiedCommit) as refused:
        env.sync()
    assert refused.value.commit == unsigned and refused.value.reason == "Unsigned"
    assert env.versions("acme/a") == [(1, first, "alice@acme.test")]
    assert env.source()["last_applied_commit"] == first
    condition = env.condition("SourceVerified")
    assert condition["status"] == "False" and condition["reason"] == "Unsigned"
    assert f"commit {unsigned[:12]} is not signed" in condition["message"]
    ready = env.condition("Ready")
    assert ready["status"] == "False" and f"still running {first[:12]}" in ready["message"]
    assert env.condition("Stalled")["status"] == "False"  # the controller is not stuck: it runs the verified state
    status = env.wfctl("status")
    assert f"SourceVerified=False Unsigned: commit {unsigned[:12]} is not signed" in status.stdout
    with pytest.raises(UnverifiedCommit):  # a pass over the same head refuses again, writing nothing new
        env.sync()
    signed = env.commit({A: workflow("a", subject="Signed")}, "Signed edit", env.alice)
    env.sync()  # with head, the signed head vouches for the unsigned commit below it (recorded as unverified)
    assert env.versions("acme/a") == [(3, signed, "alice@acme.test"), (2, unsigned, None),
                                      (1, first, "alice@acme.test")]
    assert env.condition("SourceVerified")["status"] == "True"


def test_turning_verification_off_drops_the_condition(env: Env) -> None:
    """A refused head applies once verification is off, and SourceVerified no longer speaks for the source."""
    env.commit({A: workflow("a")}, "Add a", None)
    with pytest.raises(UnverifiedCommit):
        env.sync()
    with GitSource(str(env.path), data_dir=env.data_dir) as source:
        Reconciler(source, env.store).sync()
    assert [c["type"] for c in env.source()["conditions"]] == ["Ready", "Reconciling", "Stalled", "Blocked"]
    assert env.condition("Ready")["status"] == "True"


def test_a_head_signed_by_a_key_not_in_allowed_signers_is_not_applied(env: Env) -> None:
    """A good signature by a foreign key is an unknown key: refused, naming the key, nothing applied."""
    foreign = env.commit({A: workflow("a")}, "Add a", env.mallory)
    with pytest.raises(UnverifiedCommit) as refused:
        env.sync()
    assert refused.value.reason == "UnknownKey"
    assert f"commit {foreign[:12]} is signed by SSH key {env.mallory.fingerprint}, which is not in the allowed " \
           f"signers {env.allowed}" == str(refused.value)
    assert env.source()["last_applied_commit"] is None  # a first pass refused: the source shows why
    assert env.condition("SourceVerified")["reason"] == "UnknownKey"
    with env.store.read() as conn:
        assert views.status(conn)["workflows"] == []


def test_all_refuses_an_unsigned_commit_in_the_middle_of_a_push_that_head_lets_through(env: Env) -> None:
    """With all, an unsigned commit between signed ones is refused by name; with head, the same push applies."""
    base = env.commit({A: workflow("a")}, "Add a", env.alice)
    env.sync("all")
    env.commit({A: workflow("a", subject="One")}, "One", env.alice)
    middle = env.commit({A: workflow("a", subject="Two")}, "Two", None)
    head = env.commit({A: workflow("a", subject="Three")}, "Three", env.alice)
    with pytest.raises(UnverifiedCommit) as refused:
        env.sync("all")
    assert refused.value.commit == middle
    assert str(refused.value) == f"commit {middle[:12]} is not signed (in the push up to {head[:12]})"
    assert [v[:2] for v in env.versions("acme/a")] == [(1, base)]
    plan = env.sync("head")
    assert plan.head.sha == head
    versions = env.versions("acme/a")
    assert [v[0] for v in versions] == [4, 3, 2, 1]
    assert versions[0][2] == "alice@acme.test" and versions[1][2] is None  # only head was verified


def test_all_judges_head_alone_when_the_branch_goes_back(env: Env) -> None:
    """A branch reset to an older commit has no new commits to walk: its head is judged, and it applies."""
    first = env.commit({A: workflow("a")}, "Add a", env.alice)
    env.commit({A: workflow("a", subject="Two")}, "Two", env.alice)
    env.sync("all")
    git(env.path, "reset", "-q", "--hard", first)
    env.sync("all")
    assert env.source()["last_applied_commit"] == first
    assert f"commit {first[:12]} verified" in env.condition("SourceVerified")["message"]


def test_all_checks_the_commits_a_merge_brings_in(env: Env) -> None:
    """An unsigned commit on a merged branch does not slip through under a signed merge commit."""
    env.commit({A: workflow("a")}, "Add a", env.alice)
    env.sync("all")
    git(env.path, "checkout", "-q", "-b", "side")
    sneaky = env.commit({A: workflow("a", subject="Side")}, "Side change", None)
    git(env.path, "checkout", "-q", "main")
    env.commit({"README.md": "hi\n"}, "Readme", env.alice)
    git(env.path, "config", "commit.gpgsign", "true")
    git(env.path, "merge", "-q", "--no-ff", "-m", "Merge side", "side")
    with pytest.raises(UnverifiedCommit) as refused:
        env.sync("all")
    assert refused.value.commit == sneaky


def test_account_signers_let_a_key_change_its_account_only(env: Env, tmp_path: Path) -> None:
    """Bob's key may change workflows.d/beta/ but not workflows.d/acme/: refused naming the account."""
    config = tmp_path / "config.yaml"
    config.write_text(f"accounts:\n  acme:\n    signers: [\"{env.alice.public}\"]\n"
                      f"  beta:\n    signers: [\"{env.bob.fingerprint}\", \"{env.alice.fingerprint}\"]\n")
    accounts = {k: list(v) for k, v in load_config(config).account_signers.items()}
    env.commit({A: workflow("a"), B: workflow("b")}, "Add both", env.alice)
    env.sync("all", accounts)
    bobs = env.commit({B: workflow("b", subject="Bob's")}, "Bob edits beta", env.bob)
    env.sync("all", accounts)
    assert env.versions("beta/b")[0][:3] == (2, bobs, "bob@beta.test")
    intrusion = env.commit({A: workflow("a", subject="Bob's")}, "Bob edits acme", env.bob)
    with pytest.raises(UnverifiedCommit) as refused:
        env.sync("all", accounts)
    assert refused.value.reason == "SignerNotAllowed" and refused.value.commit == intrusion
    assert "changes account acme (workflows.d/acme/)" in str(refused.value)
    assert f"bob@beta.test ({env.bob.fingerprint}) is not among the account's signers" in str(refused.value)
    assert len(env.versions("acme/a")) == 1
    # the same through the CLI and the configuration file
    result = env.wfctl("--config", str(config), "--verify-commits", "head", "--allowed-signers", str(env.allowed),
                       "sync")
    assert result.exit_code == 3
    assert "changes account acme" in result.stderr and len(result.stderr.splitlines()) == 1


def test_the_options_and_their_environment_variables(env: Env) -> None:
    """--verify-commits and WFC_VERIFY_COMMITS are read; a bad value or missing keys is one line and exit 2."""
    env.commit({A: workflow("a")}, "Add a", None)
    bad = env.wfctl("--verify-commits", "sometimes", "sync")
    assert bad.exit_code == 2 and len(bad.stderr.splitlines()) == 1
    assert "'sometimes' is not one of 'off', 'head', 'all'" in bad.stderr
    from_env = env.wfctl("sync", env={"WFC_VERIFY_COMMITS": "never"})
    assert from_env.exit_code == 2 and "'never' is not one of" in from_env.stderr
    keyless = env.wfctl("sync", env={"WFC_VERIFY_COMMITS": "head"})
    assert keyless.exit_code == 2 and "pass --allowed-signers FILE" in keyless.stderr
    missing = env.wfctl("--verify-commits", "all", "--allowed-signers", str(env.path / "nope"), "sync")
    assert missing.exit_code == 2 and "nope: no such file" in missing.stderr
    refused = env.wfctl("sync", env={"WFC_VERIFY_COMMITS": "head", "WFC_ALLOWED_SIGNERS": str(env.allowed)})
    assert refused.exit_code == 3 and "is not signed" in refused.stderr
    planned = env.wfctl("plan", env={"WFC_VERIFY_COMMITS": "all", "WFC_ALLOWED_SIGNERS": str(env.allowed)})
    assert planned.exit_code == 3 and planned.stderr.count("\n") == 1 and "is not signed" in planned.stderr
    env.commit({A: workflow("a", subject="Signed")}, "Sign it", env.alice)
    applied = env.wfctl("sync", env={"WFC_VERIFY_COMMITS": "head", "WFC_ALLOWED_SIGNERS": str(env.allowed)})
    assert applied.exit_code == 0, applied.stderr
    off = env.wfctl("sync")  # the default is off: nothing asked of the signatures
    assert off.exit_code == 0


def test_account_signers_with_verification_off_are_refused(env: Env, tmp_path: Path) -> None:
    """Signers in the configuration without --verify-commits would not be enforced: a usage error instead."""
    config = tmp_path / "config.yaml"
    config.write_text(f"accounts:\n  acme:\n    signers: [\"{env.alice.fingerprint}\"]\n")
    env.commit({A: workflow("a")}, "Add a", env.alice)
    result = env.wfctl("--config", str(config), "sync")
    assert result.exit_code == 2 and "name signers, but commit verification is off" in result.stderr
    config.write_text("accounts:\n  acme:\n    signers: [\"alice\"]\n")
    with pytest.raises(UsageError, match=r"accounts.acme.signers\[0\]: 'alice' is not a key"):
        Settings(config_path=config, verify_commits="head", allowed_signers=env.allowed).verification()


def test_wfctl_sync_in_a_subprocess_refuses_in_one_line_with_exit_3(env: Env) -> None:
    """The real `wfctl sync` prints the refusal as one line, no traceback, and exits 3 (refused by a guard)."""
    unsigned = env.commit({A: workflow("a")}, "Add a", None)
    done = subprocess.run(
        [sys.executable, "-m", "controller", "--repo", str(env.path), "--data-dir", str(env.data_dir),
         "--db", env.url, "--verify-commits", "head", "sync"],
        check=False, capture_output=True, text=True, env={**os.environ, "WFC_ALLOWED_SIGNERS": str(env.allowed)},
        timeout=60)
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [f"wfctl: error: commit {unsigned[:12]} is not signed"]


def test_serve_keeps_running_the_last_verified_state(env: Env) -> None:
    """serve's reconcile loop refuses an unsigned head without failing, stays ready, and applies the next signed one."""
    first = env.commit({A: workflow("a")}, "Add a", env.alice)
    engine = Engine(env.store, data_dir=env.data_dir)
    with GitSource(str(env.path), data_dir=env.data_dir) as source:
        reconciler = Reconciler(source, env.store, location=str(env.path), verification=env.policy("head"))
        controller = Controller(reconciler, engine, ServeOptions(interval=60, workers=1, idle_poll=0.05))
        app = create_app(Settings(repo=str(env.path), data_dir=env.data_dir), env.store, engine,
                         controller=controller, environ={secrets.KEY_ENV: Fernet.generate_key().decode()})
        client = app.test_client()
        controller.start()
        try:
            until(lambda: env.versions("acme/a"))
            unsigned = env.commit({A: workflow("a", subject="Unsigned")}, "Unsigned", None)
            controller.sync_now()
            until(lambda: env.condition("SourceVerified")["status"] == "False")
            assert unsigned[:12] in env.condition("SourceVerified")["message"]
            assert [v[:2] for v in env.versions("acme/a")] == [(1, first)]
            assert controller.supervisor.health["reconcile"].failures == 0  # a refusal is not a failing loop
            assert client.get("/readyz").status_code == 200
            assert controller._threads[0].is_alive()
            signed = env.commit({A: workflow("a", subject="Signed")}, "Signed", env.alice)
            controller.sync_now()
            until(lambda: env.versions("acme/a")[0][1] == signed)
        finally:
            controller.stop()


def test_the_api_shows_the_signer_of_versions_and_audit_events(tmp_path: Path, keys: dict[str, Key]) -> None:
    """GET .../versions and .../audit name the verified signer of the version's commit (null when not verified)."""
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"alice@acme.test {keys['alice'].public}\n")
    with http_kit(tmp_path, f"sqlite:///{tmp_path / 'api.db'}") as h:
        for name, value in {"gpg.format": "ssh", "user.signingkey": str(keys["alice"].path),
                            "commit.gpgsign": "true"}.items():
            git(h.kit.path, "config", name, value)
        text = WORKFLOWS[("acme", "greet")].replace("the greet workflow", "signed")
        signed = h.kit.commit({"workflows.d/acme/greet.yaml": text}, "Sign greet")
        with GitSource(str(h.kit.path), data_dir=h.kit.data_dir) as source:
            Reconciler(source, h.kit.store, verification=Policy("head", allowed)).sync()
        auth = h.auth(h.admin())
        versions = _body(h.client.get("/api/v1/workflows/acme/greet/versions", headers=auth))["versions"]
        newest = versions[0]
        assert (newest["commit"], newest["signer"], newest["signing_key"]) == (
            signed, "alice@acme.test", keys["alice"].fingerprint)
        assert versions[1]["signer"] is None  # applied before verification was on
        events = _body(h.client.get("/api/v1/workflows/acme/greet/audit", headers=auth))["events"]
        assert (events[0]["commit"], events[0]["signer"]) == (signed, "alice@acme.test")


def _body(response: Any) -> Any:
    assert response.status_code == 200, response.json
    return response.json


def test_restore_signs_its_commit_when_git_is_configured_to(env: Env) -> None:
    """`wfctl restore` in a checkout configured to sign makes a signed commit, which then verifies and applies."""
    env.commit({A: workflow("a")}, "Add a", env.alice)
    env.sync()
    env.commit({A: workflow("a", subject="Two")}, "Two", env.alice)
    env.sync()
    done = restore(env.path, "acme/a", 1, store=env.store)  # commit.gpgsign true, as env.commit left it
    with GitSource(str(env.path), data_dir=env.data_dir) as source:
        signature = source.signature(done.commit, allowed_signers=env.allowed, gpg_home=None)
    assert (signature.status, signature.signer) == ("G", "alice@acme.test")
    env.sync()
    assert env.versions("acme/a")[0] == (3, done.commit, "alice@acme.test")
    git(env.path, "config", "--unset", "commit.gpgsign")  # only a signing key: restore still signs (-S)
    again = restore(env.path, "acme/a", 2, store=env.store)
    with GitSource(str(env.path), data_dir=env.data_dir) as source:
        assert source.signature(again.commit, allowed_signers=env.allowed, gpg_home=None).status == "G"
    git(env.path, "config", "commit.gpgsign", "false")  # signing turned off is respected
    env.sync()
    third = restore(env.path, "acme/a", 1, store=env.store)
    with GitSource(str(env.path), data_dir=env.data_dir) as source:
        assert source.signature(third.commit, allowed_signers=env.allowed, gpg_home=None).status == "N"


@pytest.mark.parametrize(("status", "ssh", "reason"), [
    ("N", True, "Unsigned"), ("B", True, "BadSignature"), ("X", False, "ExpiredSignature"),
    ("Y", False, "ExpiredKey"), ("R", False, "RevokedKey"), ("E", False, "UnknownKey"),
    ("U", True, "UnknownKey"), ("U", False, "Succeeded"), ("G", True, "Succeeded"), ("G", False, "Succeeded"),
])
def test_which_signature_states_verify(status: str, ssh: bool, reason: str, tmp_path: Path) -> None:
    """Only G verifies, and U for GPG with a keyring (the key is in it); every other state is refused."""
    key = "SHA256:" + "A" * 43 if ssh else "0D204D49ADFA866382C7D6B2FFCA33406413DC85"
    verdict = judge(Signature("c" * 40, status, key, key, "", "someone"),
                    Policy("head", tmp_path / "allowed", tmp_path / "gnupg"), "workflows.d")
    assert (verdict.reason, verdict.verified) == (reason, reason == "Succeeded")


def test_a_public_key_line_names_the_fingerprint_ssh_keygen_prints(keys: dict[str, Key]) -> None:
    """An account's signers entry may be the public key line; it matches by the fingerprint git reports."""
    assert parse_signer(keys["alice"].public, "here") == keys["alice"].fingerprint
    assert parse_signer(keys["alice"].fingerprint, "here") == keys["alice"].fingerprint


@pytest.fixture
def gnupg(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A throwaway GnuPG home with one key, its agent stopped afterwards."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed: the GPG-signed commit case needs it (apt-get install gnupg)")
    home = tmp_path / "gpg"
    home.mkdir(mode=0o700)
    environ = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "Carol <carol@acme.test>", "ed25519",
                    "sign", "never"], check=True, capture_output=True, env=environ)
    listed = subprocess.run(["gpg", "--list-secret-keys", "--with-colons"], check=True, capture_output=True,
                            text=True, env=environ).stdout
    fingerprint = next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr:"))
    try:
        yield home, fingerprint
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], check=False, env=environ, capture_output=True)


def test_a_gpg_signed_commit_verifies_against_the_given_keyring(env: Env, gnupg: tuple[Path, str],
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """A GPG-signed head applies with --gpg-home holding the key (trusted, or only imported); without it, refused."""
    home, fingerprint = gnupg
    monkeypatch.setenv("GNUPGHOME", str(home))  # for git's signing only; verification names its keyring itself
    git(env.path, "config", "gpg.format", "openpgp")
    git(env.path, "config", "user.signingkey", fingerprint)
    git(env.path, "config", "commit.gpgsign", "true")
    signed = commit_files(env.repo, {A: workflow("a")}, "Add a, GPG-signed")
    imported = tmp_path / "imported"  # the public key only, without ownertrust: git says U
    imported.mkdir(mode=0o700)
    public = subprocess.run(["gpg", "--export", fingerprint], check=True, capture_output=True).stdout
    subprocess.run(["gpg", "--batch", "--import"], input=public, check=True, capture_output=True,
                   env={**os.environ, "GNUPGHOME": str(imported)})
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], check=False, capture_output=True,  # the import started one
                   env={**os.environ, "GNUPGHOME": str(imported)})
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    with GitSource(str(env.path), data_dir=env.data_dir) as source:
        for keyring, status, verified in ((home, "G", True), (imported, "U", True), (empty, "E", False)):
            found = Policy("head", None, keyring)
            signature = source.signature(signed, allowed_signers=None, gpg_home=keyring)
            assert signature.status == status
            assert judge(signature, found, "workflows.d").verified is verified
        with pytest.raises(UnverifiedCommit, match="not in the keyring"):
            Reconciler(source, env.store, verification=Policy("head", None, empty)).sync()
        Reconciler(source, env.store, verification=Policy("head", None, imported)).sync()
    assert env.versions("acme/a") == [(1, signed, "Carol <carol@acme.test>")]
