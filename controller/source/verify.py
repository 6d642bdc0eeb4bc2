"""Commit verification, the decision: what git says about a commit's signature -> verified, or why not.

Pure functions over :class:`Signature` values (read by :meth:`GitSource.signatures`); no git here.
``%G?`` is git's verdict on a signature; these count as verified:

* ``G`` (a good signature): for SSH the key is in the allowed-signers file for that principal; for
  GPG the key is in the keyring and trusted.
* ``U`` (good, validity unknown) **for GPG only, and only with a keyring** (``--gpg-home``): gpg can
  only call a signature good when the public key is in the keyring it was given, so importing a key
  into that keyring is the operator's trust decision; nobody has to set ownertrust on top. For SSH,
  ``U`` means the key is *not* in the allowed-signers file (git checked the signature without a
  principal): an unknown key, refused.

Everything else is refused: ``N`` unsigned, ``B`` bad, ``X`` expired signature, ``Y`` expired key,
``R`` revoked key, ``E`` cannot be checked (the public key is not in the keyring).

An account's ``signers`` (controller configuration) narrow it further: a commit that changes a file
under ``<root>/<account>/`` must be signed by one of those keys, named by key (an SSH public key line
or its ``SHA256:`` fingerprint, or a GPG fingerprint), never by a name, since principals and user ids
are only labels.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import UsageError

MODES = ("off", "head", "all")
_GPG_FINGERPRINT = re.compile(r"[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64}")
_SSH_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_REFUSED = {
    "N": ("Unsigned", "is not signed"),
    "B": ("BadSignature", "has a bad signature (the content does not match it)"),
    "X": ("ExpiredSignature", "has an expired signature"),
    "Y": ("ExpiredKey", "is signed by an expired key"),
    "R": ("RevokedKey", "is signed by a revoked key"),
}


@dataclass(frozen=True)
class Signature:
    """What git says about one commit's signature (``%G? %GK %GF %GP %GS``) and the paths it changed."""

    commit: str
    status: str  # git's %G?
    key: str = ""  # %GK: the key id (GPG) or fingerprint (SSH)
    fingerprint: str = ""  # %GF
    primary: str = ""  # %GP: the primary key's fingerprint (GPG; empty for SSH)
    signer: str = ""  # %GS: the principal (SSH) or user id (GPG)
    paths: tuple[str, ...] = ()  # the paths the commit changed (for a merge: against every parent)

    @property
    def ssh(self) -> bool:
        """Whether the signature is an SSH one (git names SSH keys by their SHA256 fingerprint)."""
        return (self.fingerprint or self.key).startswith("SHA256:")

    @property
    def keys(self) -> frozenset[str]:
        """The fingerprints an account's signers list may name for this signature."""
        return frozenset(_fingerprint(k) for k in (self.fingerprint, self.primary, self.key) if k)


@dataclass(frozen=True)
class Policy:
    """How commits are verified: ``mode`` off|head|all, against which keys, and who may change each account."""

    mode: str
    allowed_signers: Path | None = None  # SSH: git's gpg.ssh.allowedSignersFile format
    gpg_home: Path | None = None  # GPG: the keyring (GNUPGHOME)
    accounts: Mapping[str, frozenset[str]] = field(default_factory=dict)  # account -> allowed fingerprints


@dataclass(frozen=True)
class Verdict:
    """One commit judged: verified or not, why (a Flux-style reason), and who signed it."""

    commit: str
    verified: bool
    reason: str
    message: str
    signer: str = ""
    key: str = ""

    @property
    def who(self) -> str:
        """The signer as history shows it: ``principal (fingerprint)``."""
        return f"{self.signer} ({self.key})" if self.signer else self.key


@dataclass(frozen=True)
class Outcome:
    """A range judged: the verdict of every commit checked, oldest first; ``refused`` is the first failure."""

    head: str
    verdicts: tuple[Verdict, ...]

    @property
    def refused(self) -> Verdict | None:
        return next((v for v in self.verdicts if not v.verified), None)

    @property
    def signers(self) -> dict[str, Verdict]:
        """commit sha -> its verdict, for the commits that verified (recorded on their versions)."""
        return {v.commit: v for v in self.verdicts if v.verified}

    def summary(self) -> str:
        """One line for the ``SourceVerified`` condition."""
        refused = self.refused
        if refused is not None:
            return refused.message + ("" if refused.commit == self.head else f" (in the push up to {self.head[:12]})")
        head = next(v for v in self.verdicts if v.commit == self.head)
        checked = f"{len(self.verdicts)} commit(s) up to " if len(self.verdicts) > 1 else "commit "
        return f"{checked}{self.head[:12]} verified; {self.head[:12]} signed by {head.who}"


def judge(sig: Signature, policy: Policy, root: str) -> Verdict:
    """Whether one commit verifies under ``policy``; the paths decide which accounts' signers apply."""
    short = sig.commit[:12]
    refused = _REFUSED.get(sig.status)
    if refused is not None:
        return Verdict(sig.commit, False, refused[0], f"commit {short} {refused[1]}{_by(sig)}", sig.signer, sig.key)
    if sig.status == "E":
        return Verdict(sig.commit, False, "UnknownKey", f"commit {short} is signed by GPG key {sig.key}, which is "
                       f"not in the keyring{_where(policy.gpg_home, '--gpg-home')}", sig.signer, sig.key)
    if sig.status not in ("G", "U"):
        return Verdict(sig.commit, False, "CannotCheck", f"commit {short}: git reports signature state "
                       f"{sig.status!r}, which wfctl does not accept", sig.signer, sig.key)
    if sig.ssh and (sig.status == "U" or policy.allowed_signers is None):
        return Verdict(sig.commit, False, "UnknownKey", f"commit {short} is signed by SSH key {sig.key}, which is "
                       f"not in the allowed signers{_where(policy.allowed_signers, '--allowed-signers')}",
                       sig.signer, sig.key)
    if not sig.ssh and policy.gpg_home is None:
        return Verdict(sig.commit, False, "UnknownKey", f"commit {short} is signed by GPG key {sig.key}, but no "
                       f"keyring is given; pass --gpg-home", sig.signer, sig.key)
    key = sig.fingerprint or sig.key
    for account in sorted(accounts_of(sig.paths, root)):
        allowed = policy.accounts.get(account)
        if allowed is not None and not (sig.keys & allowed):
            return Verdict(sig.commit, False, "SignerNotAllowed",
                           f"commit {short} changes account {account} ({root + '/' if root else ''}{account}/) but "
                           f"its signer {sig.signer or '?'} ({key}) is not among the account's signers",
                           sig.signer, key)
    return Verdict(sig.commit, True, "Succeeded", f"commit {short} signed by {sig.signer} ({key})", sig.signer, key)


def judge_all(head: str, signatures: Iterable[Signature], policy: Policy, root: str) -> Outcome:
    """Every signature judged, oldest first."""
    return Outcome(head, tuple(judge(sig, policy, root) for sig in signatures))


def accounts_of(paths: Iterable[str], root: str) -> set[str]:
    """The account folders (``<root>/<account>/...``) the paths lie in."""
    prefix = f"{root}/" if root else ""
    found = set()
    for path in paths:
        if path.startswith(prefix):
            account, slash, _ = path[len(prefix):].partition("/")
            if slash and account:
                found.add(account)
    return found


def policy(mode: str, allowed_signers: Path | None, gpg_home: Path | None,
           accounts: Mapping[str, Iterable[str]], where: str) -> Policy | None:
    """The policy of the global options and the configuration's account signers; None when off.

    UsageError for a mode not in :data:`MODES`, a missing file or folder, a signers entry that is not
    a key, and account signers while verification is off (they would silently not be enforced).
    """
    if mode not in MODES:
        raise UsageError(f"--verify-commits {mode!r}: pass one of {', '.join(MODES)}")
    signers = {account: frozenset(parse_signer(entry, f"{where}: accounts.{account}.signers[{i}]")
                                  for i, entry in enumerate(entries))
               for account, entries in accounts.items() if entries}
    if mode == "off":
        if signers:
            raise UsageError(f"{where}: accounts {', '.join(sorted(signers))} name signers, but commit verification "
                             f"is off; pass --verify-commits head or all (WFC_VERIFY_COMMITS)")
        return None
    if allowed_signers is None and gpg_home is None:
        raise UsageError(f"--verify-commits {mode} needs the keys to trust: pass --allowed-signers FILE (SSH) "
                         f"and/or --gpg-home DIR (a GPG keyring)")
    if allowed_signers is not None and not allowed_signers.is_file():
        raise UsageError(f"--allowed-signers {allowed_signers}: no such file (git's allowed signers format: "
                         f"'<principal> <key type> <base64 key>' per line)")
    if gpg_home is not None and not gpg_home.is_dir():
        raise UsageError(f"--gpg-home {gpg_home}: no such folder (a GnuPG home holding the trusted public keys)")
    return Policy(mode, _absolute(allowed_signers), _absolute(gpg_home), signers)


def parse_signer(entry: str, where: str) -> str:
    """A signers entry as the fingerprint git reports: ``SHA256:...`` for SSH, upper-case hex for GPG.

    Takes an SSH public key line (``ssh-ed25519 AAAA... comment``), an SSH fingerprint or a GPG
    fingerprint.
    """
    text = entry.strip()
    if _SSH_FINGERPRINT.fullmatch(text) or _GPG_FINGERPRINT.fullmatch(text):
        return _fingerprint(text)
    parts = text.split()
    if len(parts) >= 2 and (parts[0].startswith(("ssh-", "ecdsa-", "sk-"))):
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            raise UsageError(f"{where}: {parts[0]} key is not valid base64") from None
        digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
        return f"SHA256:{digest}"
    raise UsageError(f"{where}: {text[:40]!r} is not a key; give an SSH public key line, its SHA256: fingerprint "
                     f"(`ssh-keygen -lf KEY.pub`) or a GPG fingerprint (40 hex digits)")


def _fingerprint(value: str) -> str:
    return value if value.startswith("SHA256:") else value.upper()


def _by(sig: Signature) -> str:
    return f" (key {sig.key})" if sig.key else ""


def _where(path: Path | None, option: str) -> str:
    return f" {path}" if path is not None else f" (none given; pass {option})"


def _absolute(path: Path | None) -> Path | None:
    return path.expanduser().resolve() if path is not None else None
