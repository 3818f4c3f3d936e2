"""A stand-in for a password manager's CLI, driven by rules the test writes.

Installed under the vendor's program name (``op``, ``bw``, ...) in a directory put first on PATH.
Every call is appended to ``$FAKE_CLI_LOG`` as a JSON line (program, argv, the environment
variables that matter to adapters), then answered by the first matching rule of ``$FAKE_CLI_RULES``:

    {"state": "locked", "rules": [{"cli": "bw", "argv": ["status"], "when": "locked",
      "stdout": "...", "stderr": "...", "exit": 0, "then": "unlocked", "env": {"BW_SESSION": "s"}}]}

``when``/``then`` read and set a small state kept in ``$FAKE_CLI_RULES.state`` (login flows change
what ``status`` answers). ``env`` requires exact values (null: the variable must be unset). A call
that matches no rule fails with exit status 97, so an unexpected call shows up in the test.
"""

import json
import os
import sys

LOGGED_ENV = ("BW_SESSION", "DOPPLER_TOKEN", "BWS_ACCESS_TOKEN")


def main() -> int:
    cli = os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    with open(os.environ["FAKE_CLI_LOG"], "a", encoding="utf-8") as log:
        env = {name: os.environ.get(name) for name in LOGGED_ENV if name in os.environ}
        log.write(json.dumps({"cli": cli, "argv": argv, "env": env}) + "\n")
    rules_path = os.environ["FAKE_CLI_RULES"]
    with open(rules_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    state_path = rules_path + ".state"
    state = spec.get("state")
    if os.path.exists(state_path):
        with open(state_path, encoding="utf-8") as handle:
            state = handle.read()
    for rule in spec["rules"]:
        if rule.get("cli", cli) != cli or rule["argv"] != argv:
            continue
        if "when" in rule and rule["when"] != state:
            continue
        if any(os.environ.get(name) != value for name, value in rule.get("env", {}).items()):
            continue
        if "then" in rule:
            with open(state_path, "w", encoding="utf-8") as handle:
                handle.write(rule["then"])
        sys.stdout.write(rule.get("stdout", ""))
        sys.stderr.write(rule.get("stderr", ""))
        return int(rule.get("exit", 0))
    sys.stderr.write(f"fake {cli}: unexpected call {argv}\n")
    return 97


if __name__ == "__main__":
    sys.exit(main())
