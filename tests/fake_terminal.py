"""A tiny terminal for tests: what a screen shows after some output with the live view's ANSI moves.

Handles printable text (wrapping at the width), ``\\n``, ``\\r``, ``ESC[nF``/``ESC[nA`` (up, not above the
top of the screen), ``ESC[J``/``ESC[K`` (clear) and ignores colours (``ESC[...m``). Lines scrolled off the
top are kept in :attr:`scrollback`.
"""

from __future__ import annotations

import re

_CSI = re.compile(r"\x1b\[([0-9;]*)([A-Za-z])")


class FakeTerminal:
    def __init__(self, width: int = 80, height: int = 24) -> None:
        self.width, self.height = width, height
        self.lines: list[str] = [""]  # scrollback and screen; the screen is the last `height` lines
        self.row = 0
        self.col = 0
        self.top = 0  # first line on screen: once scrolled off, a line never comes back (clearing does not unscroll)

    @property
    def scrollback(self) -> list[str]:
        return self.lines[:self.top]

    @property
    def screen(self) -> list[str]:
        return self.lines[self.top:self.top + self.height]

    def feed(self, text: str) -> None:
        position = 0
        while position < len(text):
            match = _CSI.match(text, position)
            if match:
                self._control(match.group(1), match.group(2))
                position = match.end()
                continue
            char = text[position]
            position += 1
            if char == "\n":
                self._newline()
            elif char == "\r":
                self.col = 0
            elif char >= " ":
                if self.col >= self.width:
                    self._newline()
                line = self.lines[self.row].ljust(self.col)
                self.lines[self.row] = line[:self.col] + char + line[self.col + 1:]
                self.col += 1

    def _newline(self) -> None:
        self.row += 1
        self.col = 0
        if self.row == len(self.lines):
            self.lines.append("")
        self.top = max(self.top, len(self.lines) - self.height)

    def _control(self, argument: str, command: str) -> None:
        count = int(argument or "1") if command in "AF" else 0
        if command in "AF":
            self.row = max(self.top, self.row - count)
            if command == "F":
                self.col = 0
        elif command == "J":
            self.lines[self.row] = self.lines[self.row][:self.col]
            del self.lines[self.row + 1:]
        elif command == "K":
            self.lines[self.row] = self.lines[self.row][:self.col]

    def text(self) -> str:
        """Everything shown, scrollback included, trailing blank lines left out."""
        return "\n".join(line.rstrip() for line in self.lines).rstrip("\n")
