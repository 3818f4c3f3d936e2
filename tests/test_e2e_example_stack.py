"""examples/stack end to end on 3 sandbox servers: Postgres accessory, web and worker roles, a migration run
by the pre-deploy hook, secrets from .kamal/secrets.

``setup`` (after ``accessory boot db``, as the example's README says); a note written at v1; a deploy of a
commit that adds a column through a new migration: the note is there with the new column's default and
the worker processed it; a note with the new column; a rollback to v1: both notes are read by the old code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import Result, run_kamalpy
from test_e2e_deploy_caddy import ADMIN_PORT, HTTP_PORT, HTTPS_PORT

pytestmark = pytest.mark.sandbox

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "stack"
DEFAULT_PREFIX, DEFAULT_DIR = "10.213.0.", "/var/tmp/kamalpy-sandbox"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]


class Stack:
    def __init__(self, root: Path, sandbox) -> None:
        self.root, self.sandbox = root, sandbox
        shutil.copytree(EXAMPLE, root)
        prefix = sandbox.spec.gateway.rsplit(".", 1)[0] + "."
        for name in ("config/deploy.yml", "Dockerfile", ".kamal/secrets"):  # the example is for the default sandbox
            path = root / name
            text = path.read_text().replace(DEFAULT_PREFIX, prefix)
            path.write_text(text.replace(DEFAULT_DIR, str(sandbox.spec.dir)))
        # Ports of their own (as the caddy tests use): the kamal-proxy stand-in of other tests may hold 80 and 443.
        config = yaml.safe_load((root / "config/deploy.yml").read_text())
        config["proxy"]["run"].update(http_port=HTTP_PORT, https_port=HTTPS_PORT)
        config["proxy"]["caddy"] = {"admin_port": ADMIN_PORT}
        (root / "config/deploy.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.hosts = list(sandbox.hosts)[:3]
        subprocess.run([*GIT, "init", "-q"], cwd=root, check=True)
        self.commit("v1")

    def commit(self, message: str) -> str:
        subprocess.run([*GIT, "add", "-A"], cwd=self.root, check=True)
        subprocess.run([*GIT, "commit", "-qm", message], cwd=self.root, check=True)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=self.root, check=True, capture_output=True,
                              text=True).stdout.strip()

    def ok(self, *args: str) -> Result:
        result = run_kamalpy(*args, cwd=self.root, env={"KAMAL_LOCK": "false"})
        assert result.code == 0, (result.out + result.err)[-3000:]
        assert "Traceback" not in result.out + result.err
        return result

    def request(self, host: str, path: str, note: dict | None = None) -> tuple[int, str]:
        data = json.dumps(note).encode() if note is not None else None
        request = urllib.request.Request(f"http://{host}:{HTTP_PORT}{path}", data=data, headers={"Host": "stack.test"})
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read().decode().strip()

    def notes(self, host: str) -> list[dict]:
        return json.loads(self.request(host, "/notes")[1])

    def migrations(self) -> list[str]:
        out = self.ok("accessory", "exec", "db", "--reuse",
                      "psql -U postgres -d stack -tAc 'SELECT name FROM schema_migrations ORDER BY name'").out
        return [line.strip() for line in out.splitlines() if line.strip().endswith(".sql")]


@pytest.fixture
def stack(sandbox, tmp_path):
    sandbox.example_image("postgres")
    sandbox.example_image("python")
    stack = Stack(tmp_path / "stack", sandbox)
    yield stack
    for args in (("remove", "-y"), ("proxy", "remove", "--force")):
        run_kamalpy(*args, cwd=stack.root, env={"KAMAL_LOCK": "false"})
    sandbox.docker(stack.hosts[0], "volume", "rm", "stack-pgdata", check=False)


def test_example_stack_setup_migrating_deploy_and_rollback_keep_the_data(stack):
    assert shutil.which("kamalpy"), "the pre-deploy hook calls kamalpy (conftest puts it on PATH)"
    first, second, third = stack.hosts
    stack.ok("accessory", "boot", "db")
    stack.ok("setup")
    v1 = subprocess.run(["git", "rev-parse", "HEAD"], cwd=stack.root, capture_output=True, text=True).stdout.strip()
    assert stack.migrations() == ["001_notes.sql"]
    assert stack.request(first, "/notes", {"body": "written at v1"})[0] == 201
    assert {stack.request(host, "/version")[1] for host in stack.hosts} == {v1}
    deadline = time.monotonic() + 30
    while not stack.notes(third)[0]["processed"]:  # the worker role at work
        assert time.monotonic() < deadline, "the worker did not process the note"
        time.sleep(0.5)

    (stack.root / "app" / "migrations" / "002_author.sql").write_text(
        "ALTER TABLE notes ADD COLUMN author text NOT NULL DEFAULT 'anonymous';\n")
    v2 = stack.commit("notes have an author")
    stack.ok("deploy")
    assert stack.migrations() == ["001_notes.sql", "002_author.sql"]
    assert {stack.request(host, "/version")[1] for host in stack.hosts} == {v2}
    before = stack.notes(second)
    assert [(n["body"], n["author"], n["processed"]) for n in before] == [("written at v1", "anonymous", True)]
    assert stack.request(second, "/notes", {"body": "written at v2", "author": "ann"})[0] == 201

    stack.ok("rollback", v1)
    assert {stack.request(host, "/version")[1] for host in stack.hosts} == {v1}
    after = stack.notes(first)
    assert [(n["body"], n["author"]) for n in after] == [("written at v1", "anonymous"), ("written at v2", "ann")]
    status, health = stack.request(first, "/up")
    assert (status, health) == (200, "ok")
