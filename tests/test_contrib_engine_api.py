"""contrib/kamalpy-engine-api: the HTTP client, the shell words, and each command array vs its exact API requests.

The distribution is pip-installed (``--target``) and imported from there, as a user's install would be. The
hook itself is checked with a stand-in session: a translated step never reaches the shell, every other step
does, in order, and a dry run with the plugin installed prints what it prints without it. The effects on real
servers (with and without the plugin) are compared in tests/test_e2e_engine_api.py.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest
from helpers import dry_run_environment, pip_install_target, run_kamalpy, write_project

from kamalpy.commands.base import render

CONTRIB = Path(__file__).resolve().parents[1] / "contrib" / "kamalpy-engine-api"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = pip_install_target(CONTRIB, tmp_path_factory.mktemp("engine-api-dist"))
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith("kamalpy_engine_api")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def tr(site):
    from kamalpy_engine_api import translate

    assert translate.__file__.startswith(str(site))
    return translate


class FakeApi:
    """Records each request; answers from ``replies`` (path -> Reply or list of Replies), else 404."""

    def __init__(self, tr, replies=None, files=None):
        self.tr, self.replies, self.files = tr, dict(replies or {}), dict(files or {})
        self.calls: list[tuple] = []
        self.reads: list[str] = []

    def call(self, method, path, query=None, body=None, headers=None):
        self.calls.append((method, path, dict(query or {}), body, dict(headers or {})))
        reply = self.replies.get(f"{method} {path}")
        if isinstance(reply, list):
            return reply.pop(0)
        return reply or self.tr.Reply(404, b'{"message":"not found"}')

    def read_file(self, path):
        self.reads.append(path)
        return self.files.get(path)


def reply(tr, status, body=None):
    return tr.Reply(status, json.dumps(body).encode() if body is not None else b"")


def plan(tr, command, files=None):
    return tr.translate(render(command), files)


# ----- shell words -----

@pytest.mark.parametrize(("line", "expected"), [
    ("docker ps --format \"{{.Names}}\"", ["docker", "ps", "--format", "{{.Names}}"]),
    ("docker container ls --filter 'name=^a-b$' --quiet", ["docker", "container", "ls", "--filter", "name=^a-b$",
                                                           "--quiet"]),
    ('--env K="a\\"b\\\\c\\$d\\x"', ["--env", 'K=a"b\\c$d\\x']),
    ("'it'\\''s'", ["it's"]),
    ("--label destination", ["--label", "destination"]),
])
def test_words_are_the_shells(site, line, expected):
    from kamalpy_engine_api.words import words

    assert words(line) == expected


@pytest.mark.parametrize("line", ["a | b", "a; b", "a && b", "echo $HOME", 'echo "$x"', "echo `id`", "a > f",
                                  "ls *", "echo {a,b}", "cd ~", "a # b", "(a)", "echo 'open", "a\tb", "x=1 cmd"])
def test_anything_else_is_not_words(site, line):
    from kamalpy_engine_api.words import words

    found = words(line)
    assert found is None or found[0] == "x=1"  # an assignment word is no command docker_plan accepts
    if found is not None:
        assert found[0] != "docker"


def test_flags_as_the_docker_cli_reads_them(tr):
    spec = {**tr.PS_FLAGS, **tr.STOP_FLAGS}
    assert tr.parse(["-aq", "--filter=a=b", "-f", "c=d", "x"], spec) == (
        {"all": True, "quiet": True, "filter": ["a=b", "c=d"]}, ["x"])
    assert tr.parse(["-t30", "n"], spec) == ({"time": "30"}, ["n"])
    assert tr.parse(["--time", "5", "--all=false"], spec) == ({"time": "5", "all": False}, [])
    for bad in (["--unknown"], ["-t"], ["--", "x"], ["--all=maybe"], ["-z"]):
        assert tr.parse(bad, spec) is None, bad
    assert tr.parse(["img", "-t", "1"], spec, interspersed=False) == ({}, ["img", "-t", "1"])


# ----- the HTTP client -----

class FakeStream:
    def __init__(self, *chunks: bytes):
        self.sent = bytearray()
        self.chunks = list(chunks)

    def sendall(self, data):
        self.sent += data

    def recv(self, size):
        return self.chunks.pop(0) if self.chunks else b""


def test_http_request_bytes_and_content_length_reply(site):
    from kamalpy_engine_api.http import HttpClient

    stream = FakeStream(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n",
                        b'{"Id":"ab"}HTTP/1.1 204 No Content\r\n\r\n')
    client = HttpClient(stream)
    got = client.request("POST", "/containers/create", {"name": "app-web-v2"}, {"Image": "x"})
    assert (got.status, got.json()) == (201, {"Id": "ab"})
    assert bytes(stream.sent) == (b"POST /containers/create?name=app-web-v2 HTTP/1.1\r\nHost: docker\r\n"
                                  b"User-Agent: kamalpy-engine-api\r\nContent-Type: application/json\r\n"
                                  b'Content-Length: 13\r\n\r\n{"Image":"x"}')
    assert client.request("POST", "/containers/ab/start").status == 204  # kept alive, read from the same buffer
    assert not client.closed


def test_http_chunked_reply_split_anywhere(site):
    from kamalpy_engine_api.http import HttpClient

    raw = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n3;x=y\r\n 1}\r\n0\r\n\r\n'
    for size in (1, 3, 7, len(raw)):
        client = HttpClient(FakeStream(*[raw[i:i + size] for i in range(0, len(raw), size)]))
        assert client.request("GET", "/info").json() == {"a": 1}


def test_http_body_to_the_end_of_the_stream_closes(site):
    from kamalpy_engine_api.http import HttpClient, ProtocolError

    client = HttpClient(FakeStream(b"HTTP/1.1 200 OK\r\n\r\nOK", b"!"))
    assert client.request("GET", "/_ping").body == b"OK!"
    assert client.closed
    with pytest.raises(ProtocolError):
        client.request("GET", "/_ping")


def test_http_lost_stream_and_garbage(site):
    from kamalpy_engine_api.http import HttpClient, ProtocolError

    with pytest.raises(EOFError):
        HttpClient(FakeStream(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")).request("GET", "/x")
    with pytest.raises(ProtocolError):
        HttpClient(FakeStream(b"docker: 'system dial-stdio' is not a docker command.\r\n")).request("GET", "/_ping")


def test_http_interim_continue_is_skipped(site):
    from kamalpy_engine_api.http import HttpClient

    client = HttpClient(FakeStream(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
    assert client.request("POST", "/x").status == 204


# ----- each command array vs its API requests -----

LS = ["docker", "ps", "--filter", "label=service=app", "--filter", "label=destination=", "--filter",
      "label=role=web", "--format", '"{{.Names}}"']
FILTERS = '{"label":{"service=app":true,"destination=":true,"role=web":true}}'


def test_ps_names(tr):
    listed = [{"Id": "f" * 64, "Names": ["/app-web-v2"]}, {"Id": "e" * 64, "Names": ["/x/link", "/app-web-v1"]}]
    api = FakeApi(tr, {"GET /containers/json": reply(tr, 200, listed)})
    out = plan(tr, LS)(api)
    assert api.calls == [("GET", "/containers/json", {"filters": FILTERS}, None, {})]
    assert (out.status, out.stdout) == (0, "app-web-v2\napp-web-v1\n")


def test_container_id_for_name(tr):
    from kamalpy.commands.app import container_id_for

    api = FakeApi(tr, {"GET /containers/json": reply(tr, 200, [{"Id": "0123456789abcdef" * 4, "Names": ["/n"]}])})
    out = plan(tr, container_id_for("app-web-v2"))(api)
    assert api.calls == [("GET", "/containers/json", {"all": "1", "filters": '{"name":{"^app-web-v2$":true}}'},
                          None, {})]
    assert out.stdout == "0123456789ab\n"


def test_list_versions_pipeline(tr):
    api = FakeApi(tr, {"GET /containers/json": reply(tr, 200, [{"Id": "f" * 64, "Names": ["/app-web-v2"]},
                                                                {"Id": "e" * 64, "Names": ["/other"]}])})
    command = [*LS, "|", "while read line; do echo ${line#app-web-}; done"]
    out = plan(tr, command)(api)
    assert api.calls == [("GET", "/containers/json", {"filters": FILTERS}, None, {})]
    assert (out.status, out.stdout) == (0, "v2\nother\n")


def test_current_running_version_script(tr):
    from kamalpy.commands.app import current_running_version
    from kamalpy.config.model import Configuration

    config = Configuration({"service": "app", "image": "app", "servers": ["h1"],
                                     "registry": {"server": "r.example", "username": "u", "password": "p"},
                                     "builder": {"arch": "amd64"}})
    role = config.role("web")
    command = current_running_version(role)
    active = '"label":{"service=app":true,"destination=":true,"role=web":true},' \
             '"status":{"running":true,"restarting":true}'
    api = FakeApi(tr, {"GET /images/json": reply(tr, 200, [{"Id": "sha256:" + "9" * 64,
                                                            "RepoTags": ["r.example/app:latest"]}]),
                       "GET /containers/json": [reply(tr, 200, []),
                                                reply(tr, 200, [{"Id": "a" * 64, "Names": ["/app-web-v1"]}])]})
    out = plan(tr, command)(api)
    assert api.calls == [
        ("GET", "/images/json", {}, None, {})[:2] + ({"filters": '{"reference":{"r.example/app:latest":true}}'},
                                                     None, {}),
        ("GET", "/containers/json", {"limit": "1", "filters": "{" + active + ',"ancestor":{"999999999999":true}}'},
         None, {}),
        ("GET", "/containers/json", {"limit": "1", "filters": "{" + active + "}"}, None, {})]
    assert (out.status, out.stdout) == (0, "v1\n")
    # No latest image: only the second listing, as `--filter ancestor=` matches nothing.
    api = FakeApi(tr, {"GET /images/json": reply(tr, 200, []), "GET /containers/json": reply(tr, 200, [])})
    assert plan(tr, command)(api).stdout == "" and len(api.calls) == 2


def test_run_detached(tr):
    from kamalpy.commands.base import flatten

    command = flatten("docker", "run", "--detach", "--restart", "unless-stopped", "--name", "app-web-v2",
                      "--network", "kamal", "--hostname", "h1-0123456789ab", "--env", 'KAMAL_VERSION="v2"',
                      "--env", 'PLAIN="a \\"b\\""', "--env-file", ".kamal/apps/app/env/roles/web.env",
                      "--log-opt", 'max-size="10m"', "--label", 'service="app"', "--label", "destination",
                      "--volume", "data:/data", "r.example/app:v2", "sleep", "infinity")
    files = {".kamal/apps/app/env/roles/web.env": b"# c\nSECRET=s3 cr=t\n\n  B=2\r\n"}
    api = FakeApi(tr, {"POST /containers/create": reply(tr, 201, {"Id": "c" * 64}),
                       "POST /containers/" + "c" * 64 + "/start": reply(tr, 204)})
    out = plan(tr, command, files)(api)
    assert api.reads == []  # written by the same script: not read back
    assert api.calls == [
        ("POST", "/containers/create", {"name": "app-web-v2"}, {
            "Hostname": "h1-0123456789ab", "Env": ["SECRET=s3 cr=t", "B=2", "KAMAL_VERSION=v2", 'PLAIN=a "b"'],
            "Cmd": ["sleep", "infinity"], "Image": "r.example/app:v2", "Labels": {"service": "app", "destination": ""},
            "AttachStdin": False, "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
            "StdinOnce": False,
            "HostConfig": {"Binds": ["data:/data"], "LogConfig": {"Type": "", "Config": {"max-size": "10m"}},
                           "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0}, "NetworkMode": "kamal",
                           **tr.CLI_EMPTY_HOST_CONFIG},
            "NetworkingConfig": {"EndpointsConfig": {"kamal": {}}}}, {}),
        ("POST", "/containers/" + "c" * 64 + "/start", {}, None, {})]
    assert (out.status, out.stdout) == (0, "c" * 64 + "\n")


def test_run_reads_an_env_file_it_did_not_write_and_falls_back_when_it_cannot(tr):
    command = ["docker", "run", "--detach", "--name", "n", "--env-file", "e.env", "img:1"]
    api = FakeApi(tr, {"POST /containers/create": reply(tr, 201, {"Id": "c"}),
                       "POST /containers/c/start": reply(tr, 204)}, files={"e.env": b"A=1\n"})
    assert plan(tr, command)(api).status == 0 and api.reads == ["e.env"]
    assert api.calls[0][3]["Env"] == ["A=1"]
    for content in (None, b"ONLY_A_NAME\n", b"BAD KEY=1\n", b"\xff=1\n"):
        api = FakeApi(tr, files={"e.env": content} if content is not None else {})
        with pytest.raises(tr.Fallback):
            plan(tr, command)(api)
        assert api.calls == []  # nothing was created


def test_run_failures_as_the_cli(tr):
    command = ["docker", "run", "--detach", "--name", "n", "img:1"]
    api = FakeApi(tr, {"POST /containers/create": reply(tr, 404, {"message": "No such image: img:1"})})
    with pytest.raises(tr.Fallback):  # the CLI pulls it first
        plan(tr, command)(api)
    api = FakeApi(tr, {"POST /containers/create": reply(tr, 409, {"message": 'Conflict. The container name "/n" '
                                                                            "is already in use"})})
    out = plan(tr, command)(api)
    assert out.status == 125 and out.stderr.startswith("docker: Error response from daemon: Conflict.")


def test_stop_tag_rename_start_pull_prune_info_network(tr):
    from kamalpy.commands.app import stop
    from kamalpy.config.model import Configuration

    config = Configuration({"service": "app", "image": "app", "servers": {"workers": ["h1"]}, "primary_role": "workers",
                                     "registry": {"server": "r.example", "username": "u", "password": "p"},
                                     "builder": {"arch": "amd64"}})
    api = FakeApi(tr, {"GET /containers/json": reply(tr, 200, [{"Id": "a" * 64, "Names": ["/app-workers-v1"]}]),
                       "POST /containers/aaaaaaaaaaaa/stop": reply(tr, 204)})
    out = plan(tr, stop(config.role("workers"), "v1", args=["-t", "30"]))(api)
    assert api.calls[1] == ("POST", "/containers/aaaaaaaaaaaa/stop", {"t": "30"}, None, {})
    assert (out.status, out.stdout) == (0, "aaaaaaaaaaaa\n")
    api = FakeApi(tr, {"GET /containers/json": reply(tr, 200, [])})
    assert plan(tr, stop(config.role("workers"), "v1"))(api).status == 123  # xargs ran `docker stop` alone

    api = FakeApi(tr, {"POST /images/r.example%2Fapp%3Av2/tag": reply(tr, 201)})
    assert plan(tr, ["docker", "tag", "r.example/app:v2", "r.example/app:latest"])(api).status == 0
    assert api.calls == [("POST", "/images/r.example%2Fapp%3Av2/tag", {"repo": "r.example/app", "tag": "latest"},
                          None, {})]
    api = FakeApi(tr, {"POST /images/busybox/tag": reply(tr, 201)})
    plan(tr, ["docker", "tag", "busybox", "mine"])(api)
    assert api.calls[0][2] == {"repo": "docker.io/library/mine", "tag": "latest"}

    api = FakeApi(tr, {"POST /containers/a/rename": reply(tr, 404, {"message": "No such container: a"})})
    out = plan(tr, ["docker", "rename", "a", "b"])(api)
    assert api.calls == [("POST", "/containers/a/rename", {"name": "b"}, None, {})]
    assert (out.status, out.stderr) == (1, "Error response from daemon: No such container: a\n")

    api = FakeApi(tr, {"POST /containers/kamal-proxy/start": reply(tr, 204)})
    assert plan(tr, ["docker", "start", "kamal-proxy"])(api).stdout == "kamal-proxy\n"

    auth = base64.b64encode(b"user:pa:ss").decode()
    config_json = json.dumps({"auths": {"r.example": {"auth": auth}}}).encode()
    stream = b'{"status":"Pulling from app","id":"v2"}\n{"status":"Downloading","progressDetail":{"current":1}}\n' \
             b'{"status":"Status: Downloaded newer image for r.example/app:v2"}\n'
    api = FakeApi(tr, {"POST /images/create": tr.Reply(200, stream)}, files={".docker/config.json": config_json})
    out = plan(tr, ["docker", "pull", "r.example/app:v2"])(api)
    method, path, query, body, headers = api.calls[0]
    assert (method, path, query, body) == ("POST", "/images/create", {"fromImage": "r.example/app", "tag": "v2"}, None)
    assert json.loads(base64.urlsafe_b64decode(headers["X-Registry-Auth"])) == {
        "username": "user", "password": "pa:ss", "serveraddress": "r.example"}
    assert out.stdout == "v2: Pulling from app\nStatus: Downloaded newer image for r.example/app:v2\nr.example/app:v2\n"
    api = FakeApi(tr, {"POST /images/create": tr.Reply(200, b'{"error":"manifest unknown"}\n')})
    assert plan(tr, ["docker", "pull", "r.example/app:v9"])(api).status == 1
    api = FakeApi(tr, files={".docker/config.json": b'{"credsStore":"pass"}'})
    with pytest.raises(tr.Fallback):  # a credential helper: the CLI runs it
        plan(tr, ["docker", "pull", "r.example/app:v2"])(api)

    api = FakeApi(tr, {"POST /images/prune": reply(tr, 200, {"ImagesDeleted": [{"Untagged": "a:1"}, {"Deleted": "sha"}],
                                                             "SpaceReclaimed": 1234567})})
    out = plan(tr, ["docker", "image", "prune", "--force", "--filter", "label=service=app"])(api)
    assert api.calls[0][2] == {"filters": '{"label":{"service=app":true},"dangling":{"true":true}}'}
    assert out.stdout == "Deleted Images:\nuntagged: a:1\ndeleted: sha\n\nTotal reclaimed space: 1.235MB\n"

    api = FakeApi(tr, {"GET /info": reply(tr, 200, {"RegistryConfig": {"Mirrors": []}})})
    out = plan(tr, ["docker", "info", "--format", "'{{index .RegistryConfig.Mirrors 0}}'"])(api)
    assert out.status == 1 and "error calling index: reflect: slice index out of range" in out.stderr
    api = FakeApi(tr, {"GET /info": reply(tr, 200, {"RegistryConfig": {"Mirrors": ["https://m.example/"]}})})
    assert plan(tr, ["docker", "info", "--format", "'{{index .RegistryConfig.Mirrors 0}}'"])(api).stdout == \
        "https://m.example/\n"

    api = FakeApi(tr, {"GET /networks/kamal": reply(tr, 200, {"Name": "kamal"})})
    out = plan(tr, ["docker", "network", "create", "kamal"])(api)
    assert out.status == 1 and "already exists" in out.stderr
    with pytest.raises(tr.Fallback):  # a missing network: the CLI creates it
        plan(tr, ["docker", "network", "create", "kamal"])(FakeApi(tr))


def test_service_label_check(tr):
    command = ["docker", "inspect", "-f", "'{{ .Config.Labels.service }}'", "r.example/app:v2", "|", "grep", "-x",
               "app", "||", "(echo", "\"Image r.example/app:v2 is missing the 'service' label\"", "&&", "exit", "1)"]
    image = "GET /images/r.example%2Fapp%3Av2/json"
    api = FakeApi(tr, {image: reply(tr, 200, {"Config": {"Labels": {"service": "app"}}})})
    assert (plan(tr, command)(api).stdout, api.calls[0][1]) == ("app\n", "/images/r.example%2Fapp%3Av2/json")
    api = FakeApi(tr, {image: reply(tr, 200, {"Config": {"Labels": None}})})
    assert plan(tr, command)(api).status == 1


def test_proxy_start_image_version_and_prune_containers(tr):
    line = ("docker container start kamal-proxy || echo $(cat .kamal/proxy/options 2> /dev/null) | "
            "xargs docker run --name kamal-proxy")
    api = FakeApi(tr, {"POST /containers/kamal-proxy/start": reply(tr, 304)})
    assert tr.translate(line)(api).stdout == "kamal-proxy\n"
    with pytest.raises(tr.Fallback):  # no such container: the shell runs the whole line (start, then run)
        tr.translate(line)(FakeApi(tr))

    line = "docker inspect kamal-proxy --format '{{.Config.Image}}' | awk -F: '{print $NF}'"
    api = FakeApi(tr, {"GET /containers/kamal-proxy/json": reply(tr, 200, {"Config": {"Image": "r:5000/kp:v0.9.2"}})})
    assert tr.translate(line)(api).stdout == "v0.9.2\n"
    assert api.calls == [("GET", "/containers/kamal-proxy/json", {}, None, {})]

    line = ("docker ps -q -a --filter label=service=app --filter status=created --filter status=exited --filter "
            "status=dead | tail -n +3 | while read container_id; do docker rm $container_id; done")
    ids = [{"Id": c * 64} for c in "abcd"]
    api = FakeApi(tr, {"GET /containers/json": reply(tr, 200, ids), "DELETE /containers/cccccccccccc": reply(tr, 204),
                       "DELETE /containers/dddddddddddd": reply(tr, 409, {"message": "busy"})})
    out = tr.translate(line)(api)
    assert api.calls[0][2] == {"all": "1", "filters": '{"label":{"service=app":true},"status":{"created":true,'
                                                      '"exited":true,"dead":true}}'}
    assert [c[:2] for c in api.calls[1:]] == [("DELETE", "/containers/cccccccccccc"),
                                              ("DELETE", "/containers/dddddddddddd")]
    assert (out.status, out.stdout, out.stderr) == (1, "cccccccccccc\n", "Error response from daemon: busy\n")


def test_prune_images_pipeline(tr):
    from kamalpy.commands.prune import tagged_images
    from kamalpy.config.model import Configuration

    config = Configuration({"service": "app", "image": "app", "servers": ["h1"], "builder": {"arch": "amd64"},
                            "registry": {"server": "r.example", "username": "u", "password": "p"}})
    line = render(tagged_images(config))
    images = [{"Id": "sha256:" + "1" * 64, "RepoTags": ["r.example/app:v1", "r.example/app:latest"]},
              {"Id": "sha256:" + "2" * 64, "RepoTags": ["r.example/app:v2"]},
              {"Id": "sha256:" + "3" * 64, "RepoTags": ["r.example/app:v3"]},
              {"Id": "sha256:" + "4" * 64, "RepoTags": [], "RepoDigests": ["r.example/app@sha256:" + "5" * 64]}]
    containers = [{"Image": "r.example/app:v2", "ImageID": "sha256:" + "2" * 64}]
    api = FakeApi(tr, {"GET /images/json": reply(tr, 200, images), "GET /containers/json": reply(tr, 200, containers),
                       "DELETE /images/r.example%2Fapp%3Av1": reply(tr, 200, [{"Untagged": "r.example/app:v1"}]),
                       "DELETE /images/r.example%2Fapp%3Av3": reply(tr, 200, [{"Untagged": "r.example/app:v3"},
                                                                              {"Deleted": "sha256:3"}])})
    out = tr.translate(line)(api)
    filters = '{"label":{"service=app":true}}'
    assert api.calls == [("GET", "/images/json", {"filters": filters}, None, {}),
                         ("GET", "/containers/json", {"all": "1", "filters": filters}, None, {}),
                         ("DELETE", "/images/r.example%2Fapp%3Av1", {}, None, {}),
                         ("DELETE", "/images/r.example%2Fapp%3Av3", {}, None, {})]
    assert (out.status, out.stdout) == (0, "Untagged: r.example/app:v1\nUntagged: r.example/app:v3\n"
                                           "Deleted: sha256:3\n")


@pytest.mark.parametrize("command", [
    ["docker", "login", "r.example", "-u", "u", "--password-stdin"],
    ["docker", "ps"],  # the table
    ["docker", "ps", "--format", "'{{.Image}}'"],
    ["docker", "run", "--name", "n", "img"],  # not detached
    ["docker", "run", "--detach", "--name", "n", "--publish", "80:80", "img"],
    ["docker", "run", "--detach", "--name", "n", "--env", "FROM_SHELL", "img"],
    ["docker", "run", "--detach", "--name", "n", "--volume", "$PWD/x:/x", "img"],
    ["docker", "exec", "kamal-proxy", "kamal-proxy", "list"],
    ["docker", "pull", "img@sha256:" + "0" * 64],
    ["docker", "stop", "--signal", "KILL", "x"],
    ["docker", "container", "prune", "--force"],
    ["mkdir", "-p", ".kamal"],
    ["docker", "ps", "-q", "-a", "--filter", "label=service=app", "|", "tail", "-n", "+6"],
    ["docker", "image", "ls", "--filter", "label=service=app", "--format", "'{{.ID}} {{.Repository}}:{{.Tag}}'"],
])
def test_everything_else_goes_to_the_shell(tr, command):
    assert plan(tr, command) is None


# ----- the hook, with a stand-in session -----

class FakeEngine:
    def __init__(self, tr):
        from kamalpy_engine_api.http import HttpClient

        self.busy = __import__("threading").Lock()
        self.http = HttpClient(FakeStream())
        self.tr = tr


class FakeSession:
    host = "h1"

    def __init__(self):
        self.shell: list[list[str]] = []
        self.executor = object()

    def run_in_shell(self, steps):
        from kamalpy.plugin import CommandResult

        self.shell.append([render(s.command) if hasattr(s, "command") else f"write {s.path}" for s in steps])
        return [CommandResult("h1", "x", 0, "shell\n") for _ in steps]


def test_hook_runs_translated_steps_through_the_api_and_the_rest_in_order_through_the_shell(site, tr, monkeypatch):
    from kamalpy_engine_api import plugin

    from kamalpy.plugin import Step, WriteFile

    api_calls = []

    def fake_call(self, method, path, query=None, body=None, headers=None):
        api_calls.append((method, path))
        if path == "/containers/create":
            return tr.Reply(201, b'{"Id":"cid"}')
        return tr.Reply(204)

    monkeypatch.setattr(plugin.HostApi, "call", fake_call)
    session = FakeSession()
    monkeypatch.setattr(plugin, "engine_for", lambda s: FakeEngine(tr))
    steps = [Step(["mkdir", "-p", ".kamal"]), WriteFile(b"A=1\n", "e.env"),
             Step(["docker", "run", "--detach", "--name", "n", "--env-file", "e.env", "img:1"]),
             Step(["docker", "login", "r", "-u", "u", "--password-stdin"], stdin=b"pw"), Step(["docker", "start", "n"])]
    results = plugin.kamalpy_run_steps(session, steps)
    assert session.shell == [["/usr/bin/env mkdir -p .kamal", "write e.env"],
                             ["docker login r -u u --password-stdin"]]
    assert api_calls == [("POST", "/containers/create"), ("POST", "/containers/cid/start"),
                         ("POST", "/containers/n/start")]
    assert [r.stdout for r in results] == ["shell\n", "shell\n", "cid\n", "shell\n", "n\n"]
    # Nothing to translate: the hook leaves the whole script to kamalpy's own shell path.
    assert plugin.kamalpy_run_steps(FakeSession(), [Step(["mkdir", "-p", ".kamal"])]) is None


def test_hook_stops_at_a_failing_checked_step(site, tr, monkeypatch):
    from kamalpy_engine_api import plugin

    from kamalpy.plugin import Step

    monkeypatch.setattr(plugin.HostApi, "call", lambda self, *a, **k: tr.Reply(404, b'{"message":"No such container"}'))
    monkeypatch.setattr(plugin, "engine_for", lambda s: FakeEngine(tr))
    session = FakeSession()
    results = plugin.kamalpy_run_steps(session, [Step(["docker", "rename", "a", "b"]), Step(["mkdir", "x"])])
    assert [r.exit_status for r in results] == [1] and session.shell == []


# ----- installed: entry point, dry run unchanged -----

def test_dry_run_with_the_plugin_installed_prints_what_it_prints_without(site, tmp_path, monkeypatch):
    config = {"service": "app", "image": "app", "servers": {"web": ["127.0.0.2"], "workers": ["127.0.0.3"]},
              "registry": {"server": "r.example", "username": "u", "password": "p"}, "builder": {"arch": "amd64"},
              "env": {"clear": {"A": "1"}}}
    write_project(tmp_path, json.dumps(config))
    dry_run_environment(monkeypatch, tmp_path, version="v2", name="D", email="d@example.com")
    listed = run_kamalpy("plugins", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert "engine_api" in listed.out, listed.out + listed.err
    with_plugin = run_kamalpy("deploy", "-P", "--dry-run", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    without = run_kamalpy("deploy", "-P", "--dry-run", cwd=tmp_path)
    disabled = run_kamalpy("deploy", "-P", "--dry-run", "--disable-plugin", "engine_api", cwd=tmp_path,
                           env={"PYTHONPATH": str(site)})
    assert with_plugin.code == without.code == disabled.code == 0, with_plugin.err

    def strip(text):
        import re

        text = re.sub(r'lock-app && echo "[^"]*"', "LOCK", text)  # the lock's details hold the time
        text = re.sub(r"--hostname (\S+)-[0-9a-f]{12} ", r"--hostname \1-X ", text)  # a random suffix
        return re.sub(r"\[\d{4}-\d\d-\d\dT[\d:]+Z\]|in \d+\.\d seconds", "T", text)

    assert strip(with_plugin.out) == strip(without.out) == strip(disabled.out)
