"""The deployment files (deploy/Dockerfile, deploy/compose.yaml, deploy/kubernetes/) say true things.

Nothing is built or pulled here: the files are parsed, cross-checked against each other (probe
paths on the port the Service targets, the Secret the pods read), and every ``wfctl`` command line
in them is parsed by the real click command tree, so a renamed option or subcommand fails here
rather than in a cluster. ``docker compose config`` runs too where the compose plugin exists.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from gitutil import commit_files, git, make_repo
from httpkit import http_kit
from jsonschema import Draft7Validator
from ruamel.yaml import YAML
from sqlalchemy import create_engine

from controller.cli import cli
from controller.config import load_config
from controller.source import GitSource
from controller.store import Store
from webhooks import create_app, start_server

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
# A Fernet-shaped key (32 bytes, url-safe base64), only so that `docker compose config` can interpolate.
_SOME_KEY = "x" * 43 + "="


def load_documents(path: Path) -> list[Any]:
    """Every YAML document of ``path``, empty ones dropped."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in YAML(typ="safe").load_all(handle) if doc is not None]


def manifests() -> dict[str, dict[str, Any]]:
    """The Kubernetes objects of deploy/kubernetes by kind (one of each)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in load_documents(path):
            assert doc["kind"] not in found, f"{path.name}: a second {doc['kind']}"
            found[doc["kind"]] = doc
    return found


def compose() -> dict[str, Any]:
    (doc,) = load_documents(COMPOSE)
    return dict(doc)


def serve_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in doc["services"].items() if "serve" in svc.get("command", [])}


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of ``(INSTRUCTION, arguments)``, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def pod_container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return dict(container)


# -- every wfctl command line in the files -------------------------------------------------


def command_lines() -> Iterator[tuple[str, list[str]]]:
    """``(where, argv after wfctl)`` of every wfctl invocation in the deployment files."""
    final = dockerfile_stages()[-1]
    (entrypoint,) = instructions(final, "ENTRYPOINT")
    (cmd,) = instructions(final, "CMD")
    assert json.loads(entrypoint) == ["wfctl"]
    yield "Dockerfile CMD", json.loads(cmd)
    for name, svc in compose()["services"].items():
        if svc.get("image", "").startswith("wfctl"):
            yield f"compose.yaml {name}", list(svc["command"])
    for kind, doc in manifests().items():
        if kind in ("Deployment", "Job"):
            yield f"kubernetes {kind}", [str(arg) for arg in pod_container(doc)["args"]]
    for line in (DEPLOY / "README.md").read_text(encoding="utf-8").splitlines():
        # Code lines of the README: `wfctl ...`, or a compose run of the image (its entrypoint is wfctl).
        run = re.match(r"^\s*(?:\$ )?(?:wfctl|docker compose .*? run --rm [\w-]+) (.*)$", line)
        if run:
            # /repo is where compose mounts this checkout: a file named there must exist here.
            argv = [re.sub(r"^/repo(?=/|$)", str(ROOT), arg) for arg in shlex.split(run.group(1).split(" #")[0])]
            yield f"deploy/README.md: {line.strip()}", argv
    for span in re.findall(r"`wfctl ([^`]+)`", production_section()):
        yield f"README.md: wfctl {span}", shlex.split(span)


def production_section() -> str:
    """The README's "Running in production" section, which names the same commands and variables."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Running in production\n", 1)[1].split("\n## ", 1)[0]


def parse_command_line(argv: list[str]) -> list[str]:
    """The names of the commands ``wfctl ARGV`` runs, parsed by click as ``wfctl`` would (nothing runs)."""
    command: click.Command = cli
    ctx = command.make_context("wfctl", list(argv))
    names: list[str] = []
    while isinstance(command, click.Group):
        # click >= 8.2 keeps the subcommand in _protected_args (8.1: protected_args), as Group.invoke reads it.
        rest = [*(getattr(ctx, "_protected_args", None) or ctx.protected_args), *ctx.args]
        assert rest, f"wfctl {' '.join(argv)}: no subcommand after {' '.join(names) or 'wfctl'}"
        name, found, rest = command.resolve_command(ctx, rest)
        assert found is not None and name is not None
        names.append(name)
        command = found
        ctx = command.make_context(name, rest, parent=ctx)
    return names


@pytest.mark.parametrize("where,argv", list(command_lines()), ids=lambda value: value if isinstance(value, str) else "")
def test_every_wfctl_command_line_parses_with_the_real_cli(where: str, argv: list[str]) -> None:
    """Each subcommand and option a deployment file names exists and takes the value given."""
    try:
        parse_command_line(argv)
    except click.ClickException as e:
        pytest.fail(f"{where}: wfctl {' '.join(argv)}: {e.format_message()}")


def test_the_command_lines_are_found() -> None:
    """The scan above sees serve and db upgrade in each file (so an empty scan cannot pass)."""
    found = {where.split(":")[0].split(" ")[0]: parse_command_line(argv) for where, argv in command_lines()}
    runs = [parse_command_line(argv) for _, argv in command_lines()]
    assert ["serve"] in runs and ["db", "upgrade"] in runs
    assert {"Dockerfile", "compose.yaml", "kubernetes", "deploy/README.md", "README.md"} <= set(found)


def environment_variables_read() -> set[str]:
    """Every ``WFC_*`` variable the product reads: click envvars and the names in its source."""
    names: set[str] = set()

    def walk(command: click.Command) -> None:
        for param in command.params:
            if isinstance(param.envvar, str):
                names.add(param.envvar)
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                walk(sub)

    walk(cli)
    for folder in ("controller", "webhooks"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(re.findall(r"[\"'](WFC_[A-Z0-9_]+)[\"']", path.read_text(encoding="utf-8")))
    return names


def test_every_environment_variable_named_is_one_wfctl_reads() -> None:
    """No deployment file sets a WFC_ variable the product ignores (a typo would be silently lost)."""
    read = environment_variables_read()
    assert {"WFC_SECRET_KEY", "WFC_DATABASE_URL", "WFC_DATA_DIR", "WFC_CONFIG"} <= read
    files = [DOCKERFILE, COMPOSE, DEPLOY / "README.md", *KUBERNETES.glob("*.yaml")]
    texts = {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8") for path in files}
    texts["README.md (Running in production)"] = production_section()
    for where, text in texts.items():
        named = set(re.findall(r"\bWFC_[A-Z0-9_]*[A-Z0-9]", text))
        assert named <= read, f"{where}: {sorted(named - read)} are read by nothing"


# -- Kubernetes ----------------------------------------------------------------------------


def test_the_kustomization_lists_every_manifest_and_each_loads() -> None:
    """kubectl apply -k applies every file in the folder, and each is a Kubernetes object."""
    (kustomization,) = load_documents(KUBERNETES / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    kinds = manifests()
    assert {"Deployment", "Service", "ConfigMap", "Secret", "Job", "Kustomization"} <= set(kinds)
    for doc in kinds.values():
        assert doc["apiVersion"] and (doc["kind"] == "Kustomization" or doc["metadata"]["name"])
    assert [image["name"] for image in kustomization["images"]] == ["wfctl"]


def test_the_deployment_runs_two_replicas_probed_on_the_port_the_service_targets() -> None:
    """Two replicas; /readyz decides readiness and /healthz liveness, on the named port the Service sends to."""
    kinds = manifests()
    deployment, service = kinds["Deployment"], kinds["Service"]
    assert deployment["spec"]["replicas"] == 2
    container = pod_container(deployment)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ports
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": service_port["targetPort"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": service_port["targetPort"]}
    args = [str(arg) for arg in container["args"]]
    assert int(args[args.index("--port") + 1]) == ports[service_port["targetPort"]]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert "://" in args[args.index("--repo") + 1]  # a URL serve clones and fetches: no volume to share
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_pods_run_as_a_non_root_user_on_a_read_only_root() -> None:
    """Every pod runs as the image's uid, read-only, with the data directory on an emptyDir."""
    kinds = manifests()
    for workload in (kinds["Deployment"], kinds["Job"]):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        container = pod_container(workload)
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert "memory" in container["resources"]["limits"]
        empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        data_dir = Path(env.get("WFC_DATA_DIR", "/var/lib/wfctl/data"))
        assert any(mounts.get(str(folder)) in empty for folder in (data_dir, *data_dir.parents))


def test_the_secret_holds_the_key_and_the_database_url_the_pods_read() -> None:
    """The Secret names WFC_SECRET_KEY and WFC_DATABASE_URL; the Deployment reads all of it, the Job the URL."""
    kinds = manifests()
    secret = kinds["Secret"]
    assert {"WFC_SECRET_KEY", "WFC_DATABASE_URL"} <= set(secret["stringData"])
    assert secret["stringData"]["WFC_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in pod_container(kinds["Deployment"])["envFrom"]
    (url,) = pod_container(kinds["Job"])["env"]
    assert url == {"name": "WFC_DATABASE_URL",
                   "valueFrom": {"secretKeyRef": {"name": secret["metadata"]["name"], "key": "WFC_DATABASE_URL"}}}


def test_the_job_runs_the_migration_command() -> None:
    """The migration Job runs `wfctl db upgrade`, once (no restart in the pod)."""
    job = manifests()["Job"]
    assert parse_command_line([str(a) for a in pod_container(job)["args"]]) == ["db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_configmap_is_a_configuration_wfctl_accepts(tmp_path: Path) -> None:
    """The ConfigMap's config.yaml loads with the real loader, where WFC_CONFIG says it is mounted."""
    kinds = manifests()
    configmap = kinds["ConfigMap"]
    ((key, text),) = configmap["data"].items()
    (tmp_path / key).write_text(text, encoding="utf-8")
    load_config(tmp_path / key)  # raises UsageError with path:line:col on any unknown key
    container = pod_container(kinds["Deployment"])
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == configmap["metadata"]["name"]]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WFC_CONFIG"] == f"{mount['mountPath']}/{key}"


# -- compose -------------------------------------------------------------------------------


def test_compose_has_postgres_a_migration_job_and_two_replicas() -> None:
    """PostgreSQL with pg_isready and a named volume; the migration runs once it is healthy; two replicas after it."""
    doc = compose()
    services = doc["services"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in doc["volumes"]
    (migrations,) = [svc for svc in services.values() if svc.get("command") == ["db", "upgrade"]]
    assert migrations["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migrations["restart"] == "no"
    migrate = next(name for name, svc in services.items() if svc is migrations)
    replicas = serve_services(doc)
    assert len(replicas) == 2
    host_ports = set()
    for svc in replicas.values():
        assert svc["depends_on"][migrate] == {"condition": "service_completed_successfully"}
        assert svc["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert svc["environment"]["WFC_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in svc["environment"]["WFC_DATABASE_URL"]
        assert "WFC_SECRET_KEY" in svc["environment"]
        (mapping,) = svc["ports"]
        host, container = mapping.split(":")
        host_ports.add(host)
        command = svc["command"]
        assert command[command.index("--port") + 1] == container
        assert command[command.index("--host") + 1] == "0.0.0.0"
        check = " ".join(svc["healthcheck"]["test"])
        assert f"127.0.0.1:{container}/readyz" in check
    assert len(host_ports) == 2


def test_compose_mounts_this_checkout_read_only_where_git_accepts_it() -> None:
    """The replicas read this repository at /repo, read-only, with safe.directory naming exactly that folder."""
    for svc in serve_services(compose()).values():
        command = svc["command"]
        repo = command[command.index("--repo") + 1]
        assert f"..:{repo}:ro" in svc["volumes"]
        assert (ROOT / "workflows.d").is_dir()
        env = svc["environment"]
        config = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))}
        assert config == {"safe.directory": repo}


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root, to give a repository to another uid as a bind mount does")
def test_the_safe_directory_environment_lets_wfctl_read_a_checkout_of_another_uid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the container: a repository owned by someone else is refused by git, and read with compose's env."""
    repo = tmp_path / "repo"

    commit_files(make_repo(repo), {"workflows.d/acme/hello.yaml": "kind: Workflow\n"}, "first")
    for path in (repo, *repo.rglob("*")):
        os.lchown(path, 4321, 4321)
    for key in [k for k in os.environ if k.startswith("GIT_CONFIG")]:
        monkeypatch.delenv(key)
    # (git itself, not GitSource: wfctl's own error for this case is not what is under test here)
    with pytest.raises(subprocess.CalledProcessError) as refused:
        git(repo, "rev-parse", "HEAD")
    assert "dubious ownership" in refused.value.stderr
    (svc, *_) = serve_services(compose()).values()
    for key, value in svc["environment"].items():
        if key.startswith("GIT_CONFIG"):
            monkeypatch.setenv(key, str(value).replace("/repo", str(repo)))
    source = GitSource(str(repo), data_dir=tmp_path / "data")
    try:
        assert source.list_files(source.resolve_head().sha)
    finally:
        source.close()


def test_compose_follows_the_compose_specification() -> None:
    """The file validates against the Compose Specification's schema (offline, where docker compose is absent).

    tests/data/compose-spec.json is schema/compose-spec.json of github.com/compose-spec/compose-spec
    at 170098ba07d9f53c383a41bfd4c5166b0a4529a6 (Apache-2.0), the schema docker compose itself checks.
    """
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text(encoding="utf-8"))
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft7Validator(schema).iter_errors(compose())]
    assert errors == []


def _compose_plugin() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "docker is not installed"
    probe = subprocess.run([docker, "compose", "version"], check=False, capture_output=True, text=True,
                           timeout=30)
    first_line = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[0]
    return None if probe.returncode == 0 else f"docker has no compose plugin here ({first_line})"


def test_docker_compose_accepts_the_file() -> None:
    """`docker compose config -q` parses and interpolates the file (where the compose plugin exists)."""
    missing = _compose_plugin()
    if missing:
        pytest.skip(missing)
    env = {**os.environ, "WFC_SECRET_KEY": _SOME_KEY}
    result = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "-q"], check=False,
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr


# -- the health checks, run as written against the real service --------------------------


def health_commands() -> dict[str, list[str]]:
    """The image's HEALTHCHECK and compose's healthcheck, as the argv each runs."""
    final = dockerfile_stages()[-1]
    (health,) = instructions(final, "HEALTHCHECK")
    image = json.loads(health[health.index("CMD ") + 4:])
    (replica, *_) = serve_services(compose()).values()
    (kind, *argv) = replica["healthcheck"]["test"]
    assert kind == "CMD"
    return {"image": image, "compose": argv}


def run_check(argv: list[str], port: int) -> int:
    """Exit status of a health check aimed at ``port`` (the container's 8080 is this test's free port)."""
    assert argv[0] == "python"
    script = [arg.replace("127.0.0.1:8080/", f"127.0.0.1:{port}/") for arg in argv[1:]]
    return subprocess.run([sys.executable, *script], capture_output=True, check=False, timeout=30).returncode


def test_the_health_checks_pass_on_a_ready_replica_and_readiness_fails_without_its_store(
        tmp_path: Path, sqlite_url: str) -> None:
    """HEALTHCHECK (/healthz) and compose's check (/readyz) exit 0 on a ready service; without a store only /healthz does."""
    commands = health_commands()
    with http_kit(tmp_path, sqlite_url) as h:
        gone = Store(create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
        ready = start_server(h.app, "127.0.0.1", 0, threads=2)
        unready = start_server(create_app(h.settings, gone, h.kit.engine, environ=h.environ), "127.0.0.1", 0,
                               threads=2)
        try:
            assert run_check(commands["image"], ready.port) == 0
            assert run_check(commands["compose"], ready.port) == 0
            assert run_check(commands["image"], unready.port) == 0  # the process answers: no restart
            assert run_check(commands["compose"], unready.port) != 0  # but it is not ready
        finally:
            ready.stop()
            unready.stop()


# -- Dockerfile ----------------------------------------------------------------------------


def test_the_image_is_slim_non_root_and_health_checked() -> None:
    """python:3.11-slim, the postgres extra, no compilers in the final stage, a non-root USER, HEALTHCHECK on /healthz."""
    stages = dockerfile_stages()
    assert all(instructions(stage, "FROM")[0].split()[0] == "python:3.11-slim" for stage in stages)
    build = " ".join(arguments for stage in stages for arguments in instructions(stage, "RUN"))
    assert re.search(r"pip install \"?\.\[postgres\]\"?", build)
    final = stages[-1]
    installed = " ".join(instructions(final, "RUN"))
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|libpq-dev)\b", installed)
    (user,) = instructions(final, "USER")
    assert user.split(":")[0] not in ("root", "0")
    (health,) = instructions(final, "HEALTHCHECK")
    cmd = json.loads(instructions(final, "CMD")[0])
    port = cmd[cmd.index("--port") + 1]
    assert f"http://127.0.0.1:{port}/healthz" in health
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert instructions(final, "EXPOSE") == [port]
