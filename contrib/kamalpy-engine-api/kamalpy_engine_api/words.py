"""The words a POSIX shell makes of a command line, for lines made of plain words only.

Anything the shell would do more with (operators, expansions, globs, comments, redirections) makes
:func:`words` answer None, and the line goes to the shell as it is.
"""

from __future__ import annotations

import string

# Unquoted characters that are a word's own in sh, dash and bash (no glob, brace, tilde, history or comment meaning).
SAFE = frozenset(string.ascii_letters + string.digits + "_@%+=:,./-^")
ESCAPABLE_IN_DOUBLE_QUOTES = '$`"\\'


def words(line: str) -> list[str] | None:
    """The argv ``line`` runs as, or None when it is anything but words separated by spaces."""
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] == " ":
            i += 1
            continue
        word: list[str] = []
        while i < n and line[i] != " ":
            c = line[i]
            if c == "'":
                j = line.find("'", i + 1)
                if j < 0:
                    return None
                word.append(line[i + 1:j])
                i = j + 1
            elif c == '"':
                i += 1
                while True:
                    if i >= n:
                        return None
                    c = line[i]
                    if c == '"':
                        i += 1
                        break
                    if c == "\\" and i + 1 < n and line[i + 1] in ESCAPABLE_IN_DOUBLE_QUOTES:
                        word.append(line[i + 1])
                        i += 2
                        continue
                    if c in "$`\n" or c == "\\" and i + 1 < n and line[i + 1] == "\n":
                        return None  # an expansion or a continued line: the shell's business
                    word.append(c)
                    i += 1
            elif c == "\\" and i + 1 < n and line[i + 1] != "\n":
                word.append(line[i + 1])  # an escaped character outside quotes is itself
                i += 2
            elif c in SAFE:
                word.append(c)
                i += 1
            else:
                return None
        out.append("".join(word))
    return out


def unquote_single(text: str) -> str | None:
    """The content of one single-quoted sh word (``'...'`` with ``'\\''`` for a quote), or None."""
    found = words(text)
    if found is None or len(found) != 1 or not text.startswith("'"):
        return None
    return found[0]
