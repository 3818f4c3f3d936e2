"""The body of an env file (``docker run --env-file``) as Kamal writes it (``Kamal::EnvFile``).

Docker reads each line as ``KEY=VALUE`` literally: no quotes, no escapes. Kamal still writes the value as
Ruby's ``String#dump`` without the surrounding quotes, with ``\\"`` and ``\\#`` turned back into ``"`` and ``#``,
so a newline is the two characters ``\\n`` and a backslash is doubled; non-ASCII runs stay raw. Matching
that byte for byte keeps a container's environment the same whichever tool deployed it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from kamalpy.config.args import ruby_dump_ascii, ruby_string

_RUNS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]+")
EMPTY_BODY = "\n"  # Kamal never uploads an empty file


def env_file_value(value: object) -> str:
    parts = []
    for run in _RUNS.findall(ruby_string(value)):
        if run.isascii():
            parts.append(ruby_dump_ascii(run)[1:-1].replace('\\"', '"').replace("\\#", "#"))
        else:
            parts.append(run)
    return "".join(parts)


def env_file(env: Mapping[str, object]) -> str:
    """``KEY=value`` lines in order; a body without any visible character is a single newline."""
    body = "".join(f"{key}={env_file_value(value)}\n" for key, value in env.items())
    return body if body.strip() else EMPTY_BODY
