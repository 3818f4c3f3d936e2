"""Random YAML as config/deploy.yml: ``kamalpy config`` never crashes.

It either prints the config (exit 0, nothing on stderr) or fails with exactly one line ``ERROR: ...``
(exit 1). An unexpected exception would show as ``ERROR (SomeError): ...`` or a traceback.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kamalpy.cli.main import main
from kamalpy.config.schema import kamal_schema


def _schema_names(node, names: set[str]) -> set[str]:
    """Every property name in the schema document: the keys a config might use."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                names.update(value)
            _schema_names(value, names)
    elif isinstance(node, list):
        for item in node:
            _schema_names(item, names)
    return names


KEY_NAMES = sorted(_schema_names(kamal_schema(), set()) - {"$comment"})
WORDS = ["amd64", "web", "workers", "localhost:5000", "1.1.1.1", "quiet", ":verbose", "...", "25%", "no",
         "unless-stopped", "gha", "ssh://docker@builder", "x-anchor", "service", "role", "a.com", ""]

scalars = (
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(WORDS) | st.text(max_size=12)
)
keys = st.sampled_from(KEY_NAMES) | st.sampled_from(WORDS) | st.text(max_size=8) | st.integers(0, 3)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=20,
)
VALID = {
    "service": "app",
    "image": "a/b",
    "registry": {"username": "u", "password": "p"},
    "builder": {"arch": "amd64"},
    "servers": ["1.1.1.1"],
}
# Mostly a valid config with random changes, so that the checks get past the first keys.
mutated = st.builds(lambda base, extra: {**base, **extra}, st.just(VALID),
                    st.dictionaries(st.sampled_from(KEY_NAMES) | keys, values, max_size=4))
documents = (
    mutated.map(lambda doc: yaml.safe_dump(doc, sort_keys=False))
    | values.map(lambda doc: yaml.safe_dump(doc))
    | st.text(max_size=200)
)


def run_config(deploy_yml: str) -> tuple[int, str, str]:
    """``kamalpy config`` in-process in a throwaway project."""
    old_cwd, old_version = os.getcwd(), os.environ.get("VERSION")
    with tempfile.TemporaryDirectory(prefix="kamalpy-fuzz-") as work:
        (Path(work) / "config").mkdir()
        (Path(work) / "config" / "deploy.yml").write_text(deploy_yml)
        (Path(work) / ".kamal").mkdir()
        (Path(work) / ".kamal" / "secrets").write_text("")
        out, err = io.StringIO(), io.StringIO()
        os.chdir(work)
        os.environ["VERSION"] = "x"
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["config"], standalone=False)
        finally:
            os.chdir(old_cwd)
            if old_version is None:
                os.environ.pop("VERSION", None)
            else:
                os.environ["VERSION"] = old_version
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_config_never_crashes(deploy_yml):
    code, out, err = run_config(deploy_yml)
    assert code in (0, 1), err
    if code == 0:
        assert err == ""
    else:
        lines = err.removesuffix("\n").split("\n")  # not splitlines(): a key may hold \x1e or \x85
        assert len(lines) == 1 and lines[0].startswith("ERROR: "), err
    assert "Traceback" not in out + err
