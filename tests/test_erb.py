"""ERB pre-processing (kamalpy.config.erb): the supported subset, Ruby's trimming rules, and clear errors."""

from __future__ import annotations

import textwrap

import pytest

from kamalpy.config.erb import render
from kamalpy.errors import ConfigurationError

ENV = {"HOME": "/home/me", "EMPTY": "", "APP": "web", "SPACED": "  padded \n", "PATH": "/usr/bin:/bin"}


def erb(text: str, env: dict[str, str] | None = None) -> str:
    return render(textwrap.dedent(text), "config/deploy.yml", ENV if env is None else env)


def erb_error(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigurationError) as info:
        erb(text, env)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- output tags and literals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('<%= ENV["HOME"] %>', "/home/me"),
        ("<%= ENV['HOME'] %>", "/home/me"),
        ('<%= ENV["NOPE"] %>', ""),
        ('<%= ENV.fetch("HOME") %>', "/home/me"),
        ('<%= ENV.fetch("NOPE", "dflt") %>', "dflt"),
        ('<%= ENV.fetch("NOPE", 22) %>', "22"),
        ('<%= ENV.fetch("NOPE", 1.50) %>', "1.5"),
        ('<%= ENV.fetch("NOPE", nil) %>', ""),
        ('<%= ENV.fetch("NOPE") { "blk" } %>', "blk"),
        ('<%= ENV.fetch "HOME" rescue 1 %>', None),
        ('<%= "a\\tb\\n" %>', "a\tb\n"),
        ("<%= 'a\\tb\\'c\\\\' %>", "a\\tb'c\\"),
        ("<%= 1_000 %>", "1000"),
        ("<%= -3 %>", "-3"),
        ("<%= 1e20 %>", "1.0e+20"),
        ("<%= nil %>", ""),
        ("<%= true %>|<%= false %>", "true|false"),
        ("<%=ENV['HOME']%>", "/home/me"),
        ("<%= (ENV['HOME']) %>", "/home/me"),
    ],
)
def test_expressions(template: str, expected: str | None) -> None:
    if expected is None:
        erb_error(template)
    else:
        assert erb(template) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('<%= ENV["APP"] == "web" %>', "true"),
        ('<%= ENV["APP"] != "web" %>', "false"),
        ('<%= ENV["NOPE"] == nil %>', "true"),
        ("<%= 1 == 1.0 %>", "true"),
        ('<%= 1 == "1" %>', "false"),
        ("<%= true == 1 %>", "false"),
        ('<%= !ENV["NOPE"] %>', "true"),
        ('<%= !!ENV["EMPTY"] %>', "true"),  # "" is true in Ruby
        ('<%= ENV["NOPE"] || "fallback" %>', "fallback"),
        ('<%= ENV["EMPTY"] || "fallback" %>', ""),
        ('<%= ENV["APP"] && ENV["HOME"] %>', "/home/me"),
        ('<%= ENV["NOPE"] && ENV["HOME"] %>', ""),
        ('<%= ENV["NOPE"] || ENV["APP"] == "web" && "both" %>', "both"),
        ('<%= (ENV["NOPE"] || ENV["APP"]) == "web" %>', "true"),
        ('<%= ENV["APP"] == "web" ? "prod" : "dev" %>', "prod"),
        ('<%= ENV["NOPE"] ? "a" : ENV["X"] ? "b" : "c" %>', "c"),
        ('<%= ENV.key?("APP") %>|<%= ENV.key?("NOPE") %>', "true|false"),
    ],
)
def test_operators(template: str, expected: str) -> None:
    assert erb(template) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('<%= ENV["SPACED"].strip %>', "padded"),
        ('<%= ENV["SPACED"].chomp %>', "  padded "),
        ('<%= ENV["SPACED"].lstrip %>', "padded \n"),
        ('<%= ENV["SPACED"].rstrip %>', "  padded"),
        ('<%= ENV["APP"].upcase.downcase %>', "web"),
        ('<%= ENV["NOPE"].to_s %>', ""),
        ('<%= ENV["EMPTY"].empty? %>', "true"),
        ('<%= ENV["EMPTY"].present? %>|<%= ENV["SPACED"].blank? %>', "false|false"),
        ('<%= ENV["EMPTY"].presence || "x" %>', "x"),
        ('<%= ENV["NOPE"].nil? %>', "true"),
        ('<%= "42abc".to_i %>', "42"),
        ('<%= ENV["APP"].strip() %>', "web"),
    ],
)
def test_methods(template: str, expected: str) -> None:
    assert erb(template) == expected


def test_method_on_nil_is_rubys_error() -> None:
    assert erb_error('x: <%= ENV["NOPE"].strip %>') == "config/deploy.yml:1: undefined method 'strip' for nil"


# --- shell-outs -----------------------------------------------------------------------------------------


def test_backticks_and_percent_x_keep_output_as_is(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "marker").write_text("")
    assert erb("<%= `echo hi` %>") == "hi\n"
    assert erb("<%= %x(printf 'a(b)') %>") == "a(b)"
    assert erb("<%= %x{ls} %>") == "marker\n"  # runs in the current directory
    assert erb("<%= %x[printf x] %>|<%= %x|printf y| %>") == "x|y"
    assert erb("<%= `printf '%s' \"$APP\"` %>") == "web"  # env reaches the shell
    assert erb("<%= `echo hi`.strip %>") == "hi"


def test_failing_command_output_is_kept_like_ruby() -> None:
    assert erb("<%= `echo out; exit 3` %>") == "out\n"
    assert erb("<%= `false` %>") == ""


def test_missing_program_is_an_error_like_ruby() -> None:
    # Ruby execs a command without shell syntax directly: a missing program raises Errno::ENOENT.
    message = erb_error("a\nb: <%= `nonexistent-kamalpy-cmd --x` %>")
    assert message == "config/deploy.yml:2: No such file or directory - nonexistent-kamalpy-cmd --x"
    # Through the shell it is just empty output.
    assert erb("<%= `nonexistent-kamalpy-cmd 2>/dev/null` %>") == ""


def test_untaken_branches_run_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = erb("""\
        <% if ENV["NOPE"] %>
        <%= `touch ran` %><%= ENV.fetch("MISSING") %>
        <% end %>
        <%= ENV["APP"] || `touch ran2` %>
        """)
    assert out == "\nweb\n"
    assert not (tmp_path / "ran").exists() and not (tmp_path / "ran2").exists()


# --- statements -----------------------------------------------------------------------------------------


def test_if_elsif_else() -> None:
    template = """\
        <% if ENV["APP"] == "db" %>
        db
        <% elsif ENV["APP"] == "web" %>
        web
        <% else %>
        other
        <% end %>
        """
    assert erb(template) == "\nweb\n\n"
    assert erb(template, {"APP": "db"}) == "\ndb\n\n"
    assert erb(template, {}) == "\nother\n\n"


def test_unless_and_nesting() -> None:
    template = """\
        <%- unless ENV["NOPE"] -%>
        a
          <%- if ENV["APP"] -%>
        b
          <%- unless ENV["APP"] -%>
        c
          <%- else -%>
        d
          <%- end -%>
          <%- end -%>
        <%- end -%>
        e
        """
    assert erb(template) == "a\nb\nd\ne\n"


def test_if_then_and_parentheses() -> None:
    assert erb('<% if(ENV["APP"]) then %>y<% end %>') == "y"


# --- trimming, comments, escapes (Ruby ERB with trim_mode "-") ------------------------------------------


def test_trimming() -> None:
    assert erb("a\n  <%- if true -%>\nb\n  <%- end -%>\nc\n") == "a\nb\nc\n"
    # Without "-" the tag's line stays (as a blank line with its indentation).
    assert erb("a\n  <% if true %>\nb\n  <% end %>\nc\n") == "a\n  \nb\n  \nc\n"
    # "<%-" eats indentation only at the start of a line; "-%>" eats only the line break right after.
    assert erb("x <%- if true %>y<% end %>") == "x y"
    assert erb("<%= 1 -%>  \nz") == "1  \nz"
    assert erb("<%= 1 -%>\r\nz") == "1z"
    assert erb("<%= 1 -%>") == "1"
    # "-%>" outside a tag is text.
    assert erb("a -%> b %> c") == "a -%> b %> c"


def test_comments_and_literal_tags() -> None:
    assert erb("a<%# a comment with \"quotes\" %>b") == "ab"
    assert erb("a\n<%# comment -%>\nb") == "a\nb"
    assert erb("<%%= not erb %>") == "<%= not erb %>"
    assert erb("<%% x %%> %>") == "<% x %%> %>"  # %%> is only an escape inside a tag
    assert erb('<%= "a%%>b" %>') == "a%>b"
    assert erb('<%= "<%" %>') == "<%"


def test_empty_statement_and_no_erb() -> None:
    assert erb("a<% %>b<%- -%>\nc") == "abc"
    text = "service: app # <- no ERB here\n"
    assert render(text, "x.yml") is text


def test_default_env_is_os_environ(monkeypatch) -> None:
    monkeypatch.setenv("KAMALPY_ERB_TEST", "from-os")
    assert render('<%= ENV["KAMALPY_ERB_TEST"] %>', "x.yml") == "from-os"


# --- errors name the file and line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "Kamal::Utils.docker_arch",
        "system('rm -rf /')",
        "File.read('x')",
        'ENV["X"] = "y"',
        "x = 1",
        '"#{ENV["HOME"]}"',
        "ENV.to_h",
        'ENV["HOME"].reverse',
        "1 + 2",
        "[1, 2].join",
        "require 'json'",
        "",
    ],
)
def test_unsupported_code_is_an_error(code: str) -> None:
    message = erb_error(f"service: app\nimage: <%= {code} %>\n")
    assert message.startswith("config/deploy.yml:2: unsupported ERB: "), message
    assert message.endswith(" ".join(code.split()))


def test_unsupported_statement_is_an_error() -> None:
    assert erb_error("a\n\n<% [1].each do |x| %>\n<% end %>") == (
        "config/deploy.yml:3: unsupported ERB: [1].each do |x|"
    )
    assert erb_error("<% puts 'x' %>").startswith("config/deploy.yml:1: unsupported ERB: puts")


def test_line_of_a_multiline_tag_is_where_it_starts() -> None:
    assert erb_error("a\nb: <%=\n  Foo.bar\n%>").startswith("config/deploy.yml:2: unsupported ERB: Foo.bar")


def test_fetch_without_default() -> None:
    assert erb_error('a: 1\nb: <%= ENV.fetch("MISSING") %>') == 'config/deploy.yml:2: key not found: "MISSING"'


def test_block_structure_errors() -> None:
    assert erb_error("a\n<% end %>") == "config/deploy.yml:2: unexpected <% end %> without <% if %>"
    assert erb_error("<% else %>").startswith("config/deploy.yml:1: unexpected <% else %>")
    assert erb_error("a\n<% if true %>\nb") == "config/deploy.yml:2: missing <% end %> for this <% if %>"
    assert erb_error("<% if true %><% else %><% elsif true %><% end %>") == (
        "config/deploy.yml:1: unexpected <% elsif %>"
    )
    assert erb_error("<% unless true %><% elsif true %><% end %>") == "config/deploy.yml:1: unexpected <% elsif %>"
    assert erb_error("a\nb <%= ENV['X']") == "config/deploy.yml:2: unterminated ERB tag <%= (missing %>)"
