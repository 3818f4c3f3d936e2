"""ERB pre-processing (kamalpy.config.erb): the supported subset, Ruby's trimming rules, and clear errors."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
        "File.write('x', 'y')",
        'ENV["X"] = "y"',
        "x = 1",
        '"#{@home}"',
        "ENV.to_h",
        'ENV["HOME"].reverse',
        "1 * 2",
        "[1, 2].sum",
        "require 'json'",
        'JSON.parse("{}")',
        '"a".gsub(/a/, "b")',
        "RUBY_ENGINE",
        "",
    ],
)
def test_unsupported_code_is_an_error(code: str) -> None:
    message = erb_error(f"service: app\nimage: <%= {code} %>\n")
    assert message.startswith("config/deploy.yml:2: unsupported ERB: "), message
    assert message.endswith(" ".join(code.split()))


def test_huge_numbers_are_unsupported_not_a_crash() -> None:
    for code in ("1" * 5000, 'Integer("' + "9" * 5000 + '")', '"9" * 5000'):
        assert erb_error(f"<%= {code} %>").startswith("config/deploy.yml:1: unsupported ERB: ")
    assert erb_error('<%= ("' + "9" * 5000 + '").to_i %>').startswith("config/deploy.yml:1: unsupported ERB: ")


def test_unsupported_statement_is_an_error() -> None:
    assert erb_error("a\n\n<% [1].each_slice(2) do |x| %>\n<% end %>") == (
        "config/deploy.yml:3: unsupported ERB: [1].each_slice(2) do |x|"
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


# --- ERB as real projects write it ----------------------------------------------------------------------


def yaml_erb(text: str, env: dict[str, str] | None = None) -> str:
    return render(textwrap.dedent(text), "config/deploy.yml", ENV if env is None else env, yaml=True)


def test_comment_lines_are_evaluated_but_unsupported_code_there_renders_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    template = """\
        # RUBY_VERSION: <%= ENV["NOPE"] || "#{RUBY_ENGINE}-#{RUBY_ENGINE_VERSION}" %>
        a: 1 # <%= Time.now %> and <%= ENV["APP"] %>
          #   args: <%= `touch ran` %>
        """
    assert yaml_erb(template) == "# RUBY_VERSION: \na: 1 #  and web\n  #   args: \n"
    assert (tmp_path / "ran").exists()  # evaluated, as Kamal does
    # A statement outside the subset there does nothing visible either, unless it shapes the program.
    assert yaml_erb('# <% puts "hi"; x = 1 %>\na: <%= 1 %>\n') == "# \na: 1\n"
    with pytest.raises(ConfigurationError, match="unsupported ERB: if RUBY_ENGINE"):
        yaml_erb("# <% if RUBY_ENGINE %>\n# <% end %>\n")
    # What Ruby would raise there still fails the load, as it fails Kamal's.
    assert "key not found" in str(pytest.raises(ConfigurationError, yaml_erb, '# <%= ENV.fetch("NOPE") %>').value)
    # Not a comment: a `#` inside a value, or a file that is not YAML (accessory files).
    for text in ('a: "x#<%= Time.now %>"', "# <%= Time.now %>"):
        with pytest.raises(ConfigurationError, match="unsupported ERB: Time.now"):
            render(text, "x", ENV, yaml=not text.startswith("#"))


@pytest.mark.parametrize(
    ("line", "in_comment"),
    [
        ("# <%= Time.now %>", True),
        ("a: 1 # <%= Time.now %>", True),
        ("  # c <%= 1 %> <%= Time.now %>", True),
        ("a: 'it''s # ' # <%= Time.now %>", True),
        ('a: "q\\" # " # <%= Time.now %>', True),
        ("<% x = 1 -%>\n# <%= Time.now %>", True),  # the trimmed line break: a new line all the same
        ('a: "x # <%= Time.now %>"', False),  # inside quotes
        ('- ["a # b", <%= Time.now %>]', False),
        ("a: x#<%= Time.now %>", False),  # `#` right after a word does not start a comment
        ("# <%= 1 -%>\nb: <%= Time.now %>", True),  # `-%>` joins the next line to the comment, as in Kamal
    ],
)
def test_what_is_a_yaml_comment(line: str, in_comment: bool) -> None:
    if in_comment:
        assert "Time" not in render(line, "x.yml", ENV, yaml=True)
    else:
        with pytest.raises(ConfigurationError, match="unsupported ERB: Time.now"):
            render(line, "x.yml", ENV, yaml=True)


def test_file_idioms(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".ruby-version").write_text("3.3.6\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "password").write_text("s3cret\r\n")
    assert erb('<%= File.read(".ruby-version").strip %>') == "3.3.6"
    assert erb('<%= File.read File.expand_path(".ruby-version", __dir__) %>') == "3.3.6\n"
    assert erb('<%= File.read("config/password").chomp %>|<%= File.exist?("config/password") %>') == "s3cret|true"
    assert erb('<%= File.exist?("nope") %>|<%= File.directory?("config") %>|<%= File.file?("config") %>') == (
        "false|true|false")
    assert erb('<%= File.expand_path("config/../x/./y") %>') == f"{tmp_path}/x/y"
    assert erb('<%= File.expand_path("/a/b", "/c") %>|<%= File.expand_path("b", "/c") %>') == "/a/b|/c/b"
    assert erb('<%= File.join(__dir__, "config", "/password") %>|<%= File.join("a/", "b") %>') == (
        "./config/password|a/b")
    assert erb('<%= File.basename("/a/b.yml", ".yml") %>|<%= File.dirname("a/b/") %>') == "b|a"
    assert erb_error('a\n<%= File.read("missing").strip %>') == (
        "config/deploy.yml:2: No such file or directory @ rb_sysopen - missing")
    assert erb_error('<%= File.read("config") %>') == "config/deploy.yml:1: Is a directory @ io_fread - config"
    assert erb_error("<%= File.read(ENV['NOPE']) %>") == (
        "config/deploy.yml:1: no implicit conversion of nil into String")


def test_dotenv_idioms(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("A=1\nB=\"two words\"\nC=$A-x\nexport D=d # comment\n")
    (tmp_path / ".env.prod").write_text("A=9\nE=$(printf hi)\n")
    env = {"A": "from-env", "PATH": "/usr/bin:/bin"}
    assert erb_error('<%= Dotenv.parse(".env") %>', env) == "config/deploy.yml:1: uninitialized constant Dotenv"
    # Without overwriting, a variable already set keeps its value, also in what parse returns.
    assert erb('<% require "dotenv" %><%= Dotenv.parse(".env", "none.env") %>', env) == (
        '{"A"=>"from-env", "B"=>"two words", "C"=>"from-env-x", "D"=>"d"}')
    assert erb('<% require "dotenv" %><%= Dotenv.parse %>', {}) == '{"A"=>"1", "B"=>"two words", "C"=>"1-x", "D"=>"d"}'
    # load returns what it changed; later lookups see the values; overload overwrites.
    template = """\
        <%- require "dotenv" -%>
        <%= Dotenv.load(".env", ".env.prod").keys.join(",") %>
        <%= ENV["A"] %> <%= ENV["B"] %> <%= ENV["E"] %>
        <%= Dotenv.overload(".env.prod") %> <%= ENV["A"] %>
        """
    assert erb(template, env) == "B,C,D,E\nfrom-env two words hi\n{\"A\"=>\"9\"} 9\n"
    assert erb_error('<% require "dotenv" %><%= Dotenv.load!("none.env") %>', env) == (
        f"config/deploy.yml:1: No such file or directory @ rb_sysopen - {tmp_path}/none.env")
    template = """\
        <%
          begin
            require "dotenv/load"
          rescue LoadError
            # optional
          end
        -%>
        <%= ENV["C"] %>"""
    assert erb(template, {}) == "1-x"


def test_dotenv_load_changes_the_process_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("KAMALPY_ERB_DOTENV_TEST=loaded\n")
    monkeypatch.setenv("KAMALPY_ERB_DOTENV_TEST", "x")
    monkeypatch.delenv("KAMALPY_ERB_DOTENV_TEST")
    assert render('<% require "dotenv/load" %><%= ENV["KAMALPY_ERB_DOTENV_TEST"] %>', "x.yml") == "loaded"
    import os

    assert os.environ["KAMALPY_ERB_DOTENV_TEST"] == "loaded"  # as in Kamal's process (secrets see it)


def test_multi_statement_blocks_and_locals() -> None:
    template = """\
        <%
          app = ENV.fetch("NOPE") { "shop" }   # a Ruby comment
          hosts = ENV.fetch("HOSTS", "a, b ,c").split(",").map(&:strip)
          port = ENV.fetch("PORT", "2200").to_i + 22; tier = nil
          tier ||= hosts.size > 2 rescue "three"
          label = "#{app}-#{hosts.last}"
        -%>
        <%= app %> <%= hosts %> <%= port %> <%= tier %> <%= label %>
        <% if hosts.include?("b") && port == 2222 -%>
        yes <%= hosts[0] %><%= hosts[-1] %><%= hosts[9].inspect %>
        <% end -%>
        """
    # `hosts.size > 2` is outside the subset: the whole tag is reported.
    assert erb_error(template).startswith("config/deploy.yml:1: unsupported ERB: app = ENV.fetch")
    template = template.replace("hosts.size > 2 rescue", "ENV.fetch('NOPE') rescue")
    assert erb_error(template + "<%- hosts.map { |h| h.upcase }.each_slice(2) do |x| -%>\n") == (
        "config/deploy.yml:12: unsupported ERB: hosts.map { |h| h.upcase }.each_slice(2) do |x|")
    assert erb(template) == 'shop ["a", "b", "c"] 2222 three shop-c\nyes acnil\n'


def test_expression_idioms() -> None:
    cases = {
        '<%= ENV.fetch("NOPE", nil).inspect %>': "nil",
        '<%= ENV.fetch("NOPE") { ENV["APP"] + "-d" } %>': "web-d",
        '<%= "#{ENV["APP"]}:#{"in#{1 + 1}"}" %>': "web:in2",
        '<%= ENV["NOPE"] || ENV["EMPTY"].presence || ENV["APP"] || "x" %>': "web",
        '<%= ENV["APP"] == "web" ? (ENV["NOPE"] ? 1 : 2) : 3 %>': "2",
        '<%= " a  b ".split.inspect %>|<%= "a,b,,".split(",").inspect %>': '["a", "b"]|["a", "b"]',
        '<%= %w[x y z].map(&:upcase).join("-") %>|<%= %w(a).first %>': "X-Y-Z|a",
        '<%= ["a ", nil, " b"].compact.map(&:strip) %>': '["a", "b"]',
        '<%= "12 apples".to_i + 1 %>|<%= nil.to_i %>|<%= 3 - 5 %>': "13|0|-2",
        '<%= ENV["APP"]&.upcase %>|<%= ENV["NOPE"]&.upcase.inspect %>': "WEB|nil",
        "<%= 'single #{not}' %>": "single #{not}",
        '<%= %w[a b].select { |x| x == "b" } %>|<%= %w[a b].reject { |x| x == "b" } %>': '["b"]|["a"]',
    }
    for template, expected in cases.items():
        assert erb(template) == expected, template
    assert erb_error('<%= "a" + nil %>') == "config/deploy.yml:1: no implicit conversion of nil into String"
    assert erb_error("<%= 1 + 'a' %>") == "config/deploy.yml:1: String can't be coerced into Integer"


def test_statement_forms() -> None:
    env = dict(ENV)
    template = """\
        <% ENV["SET"] = "v"; ENV["APP"] ||= "other" %><%= ENV["SET"] %> <%= ENV["APP"] %>
        <% x = 1 if ENV["NOPE"] %><%= x.inspect %> <% y = 2 unless ENV["NOPE"] %><%= y %>
        <% begin %><%= ENV.fetch("NOPE") %><% rescue KeyError => e %>rescued: <%= e.message %><% end %>
        <% begin; v = 1; rescue; v = 2; else; v = 3; ensure; w = 4; end %><%= v %><%= w %>
        """
    assert erb(template, env) == 'v web\nnil 2\nrescued: key not found: "NOPE"\n34\n'
    assert "SET" not in ENV  # a given env is copied, not changed
    assert erb_error('<% begin %><%= ENV.fetch("NOPE") %><% rescue LoadError %><% end %>') == (
        'config/deploy.yml:1: key not found: "NOPE"')
    assert erb_error("a\n<% begin %>\nb") == "config/deploy.yml:2: missing <% end %> for this <% begin %>"
    assert erb_error("<% rescue %>") == "config/deploy.yml:1: unexpected <% rescue %> without <% if %>"


# --- bounded nesting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "<%= " + "(" * 200 + "1" + ")" * 200 + " %>",
        "<%= " + "[" * 200 + "]" * 200 + " %>",
        "<%= " + '"#{' * 100 + "1" + '}"' * 100 + " %>",
        "<% if true %>" * 100 + "x" + "<% end %>" * 100,
        "<%= " + "!" * 5000 + "true %>",
        "<%= ENV['APP']" + ".strip" * 5000 + " %>",
        "<%= " + "true ? " * 300 + "1" + " : 2" * 300 + " %>",
        "<%= " + "ENV.fetch('X') { " * 200 + "1" + " }" * 200 + " %>",
    ],
)
def test_deep_nesting_is_a_clear_error(template: str) -> None:
    message = erb_error("a: 1\n" + template)
    assert message == ("config/deploy.yml: ERB nests too deeply (at most 32 levels of parentheses, blocks and "
                       "interpolations)")


def test_long_flat_chains_are_fine() -> None:
    assert erb("<%= " + " || ".join(["nil"] * 5000) + " || 1 %>") == "1"
    assert erb("<%= " + " + ".join(["1"] * 5000) + " %>") == "5000"
    assert erb("<%= 1 %>" * 5000) == "1" * 5000
    nested = "<%= " + "(" * 30 + "1" + ")" * 30 + " %>"
    assert erb(nested) == "1"


def test_each_loops_over_lists() -> None:
    template = """\
        servers:
        <% ENV.fetch("HOSTS", "10.0.0.1, 10.0.0.2").split(",").each do |host| -%>
          - <%= host.strip %>
        <% end -%>
        <% %w[a b].each_with_index do |name, i| %><%= i %>=<%= name %>;<% end %>
        <% [].each do %>never<% end %>1
        """
    assert erb(template) == "servers:\n  - 10.0.0.1\n  - 10.0.0.2\n0=a;1=b;\n1\n"
    assert erb_error("a\n<% ENV['APP'].each do |c| %>x<% end %>") == (
        "config/deploy.yml:2: undefined method 'each' for an instance of String")
    assert erb_error("<% [1].each do |x| %>x") == "config/deploy.yml:1: missing <% end %> for this <% each do %>"
    assert erb_error("<% [1].each do |x, y| %>x<% end %>").startswith("config/deploy.yml:1: unsupported ERB")


# --- no input ends in anything but the rendered text or one ConfigurationError ----------------------------

_SOUP = ['ENV', '[', ']', '"X"', "'Y'", '.', 'fetch', '(', ')', ',', 'File', 'read', 'exist?', 'expand_path',
         'join', '__dir__', '||', '&&', '!', '==', '?', ':', '1', '-2', 'nil', 'true', '"a#{', '}b"', 'do', 'end',
         'if', 'elsif', 'else', 'unless', 'begin', 'rescue', 'ensure', 'LoadError', '=>', '|x|', 'x', 'y', '=',
         '||=', ';', '\n', 'Dotenv', 'require', '"dotenv"', '"dotenv/load"', 'parse', 'load', 'split', 'map',
         'each', 'each_with_index', '&:strip', '{', '}', '%w[a b]', '+', 'to_i', 'strip', 'inspect', '&.', 'then']


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["<%= ", "<% ", "<%- ", "# <%= ", "\n"]),
                          st.lists(st.sampled_from(_SOUP), max_size=12), st.sampled_from([" %>", " -%>", ""])),
                max_size=6))
def test_random_code_renders_or_fails_cleanly(tmp_path, monkeypatch, parts) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "X").write_text("x\n")
    (tmp_path / ".env").write_text("K=v\n")
    text = "".join(start + " ".join(code) + end for start, code, end in parts)
    try:
        result = render(text, "config/deploy.yml", {"X": "X", "PATH": "/usr/bin:/bin"}, yaml=True)
    except ConfigurationError as error:
        assert "\n" not in str(error) and str(error).startswith("config/deploy.yml")
    else:
        assert isinstance(result, str)


def test_conversions_and_replacements() -> None:
    assert erb('<%= %w[a b].to_json %>|<%= "x<&>".to_json %>|<%= nil.to_json %>') == (
        '["a","b"]|"x\\u003c\\u0026\\u003e"|null')
    assert erb('<%= Integer("0x1F") %>|<%= Integer(" -1_000 ") %>|<%= Integer(7) %>') == "31|-1000|7"
    assert erb_error('<%= Integer("7a") %>') == 'config/deploy.yml:1: invalid value for Integer(): "7a"'
    assert erb('<%= "a-b-c".gsub("-", "") %>|<%= "a-b-c".sub("-", "+") %>|<%= "hello".tr("el", "ip") %>') == (
        "abc|a+b-c|hippo")
    assert erb_error('<%= "a".tr("a-z", "b") %>').startswith("config/deploy.yml:1: unsupported ERB")
    assert erb_error('<%= "a".gsub("a", "\\\\0") %>').startswith("config/deploy.yml:1: unsupported ERB")
