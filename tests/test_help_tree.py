"""``help [COMMAND]``, ``GROUP help [SUB]``, ``tree`` and ``GROUP tree``: Kamal's commands, from kamalpy's own
click tree (a plugin's commands show up too). Output without a project: no configuration is read."""

from __future__ import annotations

import re

import pytest

GROUPS = ("accessory", "app", "build", "lock", "proxy", "prune", "registry", "secrets", "server")


@pytest.fixture(autouse=True)
def empty_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_help_is_the_help_option(kamalpy):
    root = kamalpy("--help")
    assert root.code == 0 and "Commands:" in root.out
    assert kamalpy("help") == root
    for words in (["deploy"], ["app"], ["app", "logs"], ["proxy", "boot"]):
        expected = kamalpy(*words, "--help")
        assert expected.code == 0
        assert kamalpy("help", *words) == expected, words
        if len(words) == 2:  # GROUP help SUB
            assert kamalpy(words[0], "help", words[1]) == expected


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_lists_help_and_tree(kamalpy, group):
    result = kamalpy(group, "help")
    assert result == kamalpy(group, "--help")
    listed = re.findall(r"^  (\w+) ", result.out.split("Commands:")[1], re.M)
    assert {"help", "tree"} <= set(listed)


def test_unknown_command(kamalpy):
    for args in (["help", "nope"], ["app", "help", "nope"], ["help", "app", "nope"]):
        result = kamalpy(*args)
        assert (result.code, result.out, result.err) == (1, "", 'ERROR: Could not find command "nope".\n')


def test_tree_has_kamals_layout(kamalpy):
    result = kamalpy("tree")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == "kamalpy:cli:main"
    assert any(line.startswith("  ├─ deploy (Deploy the app") for line in lines)
    assert lines[lines.index("  kamalpy:cli:app") + 1].startswith("    ├─ boot (")
    assert "    ├─ remove_container" not in result.out  # hidden commands stay out, as in Kamal
    assert " help (" not in result.out and " tree (" not in result.out
    # Each block ends with └─ on its last line.
    for index, line in enumerate(lines[1:], 1):
        if "kamalpy:cli:" in line:
            assert "└─" in lines[index - 1]
    assert lines[-1].lstrip().startswith("└─")


@pytest.mark.parametrize("group", GROUPS)
def test_group_tree_is_its_block_of_the_tree(kamalpy, group):
    whole = kamalpy("tree").out.splitlines()
    own = kamalpy(group, "tree")
    assert own.code == 0
    start = whole.index(f"  kamalpy:cli:{group}")
    block = [line[2:] for line in whole[start:start + len(own.out.splitlines())]]
    assert own.out.splitlines() == block
