"""docs/hooks.md has one `## kamalpy_<hook>` section per hookspec, and none for hooks that do not exist."""

from __future__ import annotations

import re
from pathlib import Path

from kamalpy import hookspecs

HOOKS_MD = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"


def hookspec_names() -> set[str]:
    # pluggy marks each hookspec function with a `<project>_spec` attribute.
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return {name for name, value in vars(hookspecs).items() if callable(value) and hasattr(value, marker)}


def documented_hooks() -> list[str]:
    return re.findall(r"^## (kamalpy_\w+)\s*$", HOOKS_MD.read_text(encoding="utf-8"), re.M)


def test_there_are_hookspecs() -> None:
    assert "kamalpy_register_commands" in hookspec_names()


def test_every_hookspec_is_documented() -> None:
    missing = hookspec_names() - set(documented_hooks())
    assert not missing, f"docs/hooks.md lacks a '## <name>' section for: {sorted(missing)}"


def test_no_documented_hook_is_unknown() -> None:
    unknown = set(documented_hooks()) - hookspec_names()
    assert not unknown, f"docs/hooks.md documents hooks that are not in kamalpy.hookspecs: {sorted(unknown)}"


def test_each_hook_is_documented_once() -> None:
    names = documented_hooks()
    assert len(names) == len(set(names)), "a hook has two sections in docs/hooks.md"


def test_every_section_says_whether_it_is_firstresult() -> None:
    text = HOOKS_MD.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    for section in sections:
        name = section.split("\n", 1)[0].strip()
        if not name.startswith("kamalpy_"):
            continue
        spec = getattr(hookspecs, name)
        firstresult = getattr(spec, f"{hookspecs.PROJECT_NAME}_spec")["firstresult"]
        expected = "**firstresult:**" if firstresult else "**Not firstresult:**"
        assert expected in section, f"{name}: the section should say {expected}"
        assert "```python" in section and "@hookimpl" in section, f"{name}: the section needs an example hookimpl"


def test_examples_register_against_the_hookspecs() -> None:
    """Each example runs and registers on a plugin manager (pluggy checks the argument names)."""
    import types

    from kamalpy.plugins import PluginManager

    text = HOOKS_MD.read_text(encoding="utf-8")
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        name = section.split("\n", 1)[0].strip()
        if not name.startswith("kamalpy_"):
            continue
        code = "\n".join(re.findall(r"```python\n(.*?)```", section, re.S))
        module = types.ModuleType(f"hooks_md_{name}")
        exec(compile("from kamalpy.plugin import hookimpl\n" + code, f"docs/hooks.md#{name}", "exec"), vars(module))
        pm = PluginManager()
        pm.register(module, name=name)
        assert [impl.plugin_name for impl in getattr(pm.hook, name).get_hookimpls()] == [name]
