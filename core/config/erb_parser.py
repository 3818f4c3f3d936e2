"""The parser of kamalpy's ERB (see :mod:`kamalpy.config.erb`): statements and expressions as tuples.

Statements: ``("text", s)``, ``("out", expr, tag)``, ``("expr", expr, tag)``, ``("assign", target, op, expr,
tag)``, ``("if", branches)``, ``("begin", body, handlers, else, ensure, tag)``, ``("loop", list, method,
params, body, tag)``. Expressions are evaluated by :class:`kamalpy.config.erb_ruby.Runtime`. Every method
name is checked here, so code outside the subset fails even in a branch that is not taken.
"""

from __future__ import annotations

from typing import Any

from kamalpy.config.erb_lexer import MAX_DEPTH, Tag, TooDeep
from kamalpy.config.erb_ruby import CONSTANT_METHODS, FUNCTIONS, VALUE_METHODS, Unsupported

# ---------------------------------------------------------------------------------------------------------
# Parser: statements and expressions (Ruby's precedence, lowest first:
# modifiers, `rescue` modifier, ?:, ||, &&, !, == !=, + -, unary minus, .method [] postfix, primary)

_BLOCK_END = {"end", "else", "elsif", "rescue", "ensure"}
_BLOCK_WORDS = {"if", "unless", "begin", "do", "then", *_BLOCK_END}  # they shape the program: never skipped
_LOOPS = {"each": 1, "each_with_index": 2}  # loop methods taking a do...end block: their parameters


class Parser:
    def __init__(self, tokens: list[tuple], tags: list[Tag]) -> None:
        self.tokens = tokens
        self.tags = tags
        self.pos = 0
        self.depth = 0
        self.locals: set[str] = set()

    # -- token helpers
    def peek(self, kind: str | None = None, value: Any = None, ahead: int = 0) -> bool:
        index = self.pos + ahead
        if index >= len(self.tokens):
            return False
        tok = self.tokens[index]
        return (kind is None or tok[0] == kind) and (value is None or tok[1] == value)

    def take(self, kind: str, value: Any = None) -> Any:
        if not self.peek(kind, value):
            raise Unsupported("unexpected token")
        self.pos += 1
        return self.tokens[self.pos - 1][1]

    def accept(self, kind: str, value: Any = None) -> bool:
        if self.peek(kind, value):
            self.pos += 1
            return True
        return False

    def skip_nl(self) -> None:
        while self.peek("nl"):
            self.pos += 1

    def tag(self) -> int:
        return self.tokens[min(self.pos, len(self.tokens) - 1)][2]

    def keyword(self) -> str | None:
        return self.tokens[self.pos][1] if self.peek("ident") and self.tokens[self.pos][1] in _BLOCK_END else None

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise TooDeep

    # -- statements
    def program(self) -> list:
        body = self.statements()
        if self.pos < len(self.tokens):
            raise StructureError(self.tag(), f"unexpected <% {self.keyword()} %> without <% if %>")
        return body

    def statements(self) -> list:
        body: list = []
        while self.pos < len(self.tokens):
            if self.peek("nl"):
                self.pos += 1
            elif self.peek("text"):
                body.append(("text", self.take("text")))
            elif self.keyword():
                break
            elif self.peek("out"):
                body.append(self.output())
            else:
                start, depth, tag = self.pos, self.depth, self.tag()
                try:
                    body.append(self.statement())
                    if self.pos < len(self.tokens) and not (self.peek("nl") or self.peek("text") or self.peek("out")):
                        raise Unsupported("trailing code")
                except Unsupported:
                    end = self.comment_statement_end(start, tag)
                    if end is None:
                        raise
                    # Outside the subset, in a YAML comment, and no block keyword: it outputs nothing there.
                    self.pos, self.depth = end, depth
        return body

    def comment_statement_end(self, start: int, tag: int) -> int | None:
        """Where the ``<% %>`` tag starting at ``start`` ends, if it may be skipped (see ``statements``)."""
        if not self.tags[tag].in_comment:
            return None
        end = start
        while end < len(self.tokens) and self.tokens[end][2] == tag and self.tokens[end][0] not in ("text", "out"):
            token = self.tokens[end]
            if token[0] == "ident" and token[1] in _BLOCK_WORDS:
                return None
            end += 1
        return end

    def output(self) -> tuple:
        start, depth = self.pos, self.depth
        tag = self.tag()
        self.pos += 1
        try:
            node = ("out", self.expression(), tag)
            self.skip_nl()
            self.take("outend")
            return node
        except Unsupported:
            if not self.tags[tag].in_comment:
                raise
        # Outside the subset, in a YAML comment: Kamal's output would be comment text; render nothing.
        self.pos = start
        while not self.peek("outend"):
            self.pos += 1
        self.pos += 1
        self.depth = depth
        return ("text", "")

    def statement(self) -> tuple:
        tag = self.tag()
        if self.peek("ident", "if") or self.peek("ident", "unless"):
            stmt = self.if_block()
        elif self.peek("ident", "begin"):
            stmt = self.begin_block()
        else:
            stmt = self.simple()
        while self.peek("ident", "if") or self.peek("ident", "unless") or self.peek("ident", "rescue"):
            word = self.take("ident")
            if word == "rescue":
                stmt = ("begin", [stmt], [((), None, [("expr", self.expression(), tag)])], [], [], tag)
            else:
                stmt = ("if", [(self.expression(), word == "unless", [stmt], tag)])
        return stmt

    def simple(self) -> tuple:
        tag = self.tag()
        if self.peek("ident") and self.peek("op", None, 1) and self.tokens[self.pos + 1][1] in ("=", "||=") \
                and (self.tokens[self.pos][1][0].islower() or self.tokens[self.pos][1][0] == "_"):
            name = self.take("ident")
            operator = self.take("op")
            self.skip_nl()
            self.locals.add(name)
            return ("assign", ("var", name), operator, self.rescue_modifier(), tag)
        node = self.expression()
        if self.peek("op", "=") or self.peek("op", "||="):
            if node[0] != "index" or node[1] != ("const", "ENV"):
                raise Unsupported("assignment")
            operator = self.take("op")
            self.skip_nl()
            return ("assign", ("envset", node[2][0]), operator, self.rescue_modifier(), tag)
        return node if node[0] == "loop" else ("expr", node, tag)

    def rescue_modifier(self) -> tuple:
        node = self.expression()
        if self.accept("ident", "rescue"):
            return ("rescue", node, self.expression())
        return node

    def if_block(self) -> tuple:
        tag = self.tag()
        word = self.take("ident")
        self.enter()
        branches: list = []
        cond = self.expression()
        self.accept("ident", "then")
        branches.append((cond, word == "unless", self.statements(), tag))
        has_else = False
        while True:
            keyword = self.keyword()
            branch_tag = self.tag()
            if keyword is None:
                raise StructureError(tag, f"missing <% end %> for this <% {word} %>")
            self.pos += 1
            if keyword == "end":
                break
            if has_else or keyword not in ("else", "elsif") or (keyword == "elsif" and word == "unless"):
                raise StructureError(branch_tag, f"unexpected <% {keyword} %>")
            if keyword == "else":
                has_else = True
                branches.append((None, False, self.statements(), branch_tag))
            else:
                cond = self.expression()
                self.accept("ident", "then")
                branches.append((cond, False, self.statements(), branch_tag))
        self.depth -= 1
        return ("if", branches)

    def begin_block(self) -> tuple:
        tag = self.tag()
        self.take("ident", "begin")
        self.enter()
        body = self.statements()
        handlers: list = []
        else_body: list = []
        ensure_body: list = []
        while True:
            keyword = self.keyword()
            if keyword is None:
                raise StructureError(tag, "missing <% end %> for this <% begin %>")
            self.pos += 1
            if keyword == "end":
                break
            if keyword == "rescue" and not else_body and not ensure_body:
                classes: list[str] = []
                while self.peek("ident") and self.tokens[self.pos][1][0].isupper():
                    name = self.take("ident")
                    while self.accept("op", "::"):
                        name += "::" + self.take("ident")
                    classes.append(name)
                    if not self.accept("op", ","):
                        break
                variable = None
                if self.accept("op", "=>"):
                    variable = self.take("ident")
                    self.locals.add(variable)
                self.accept("ident", "then")
                handlers.append((tuple(classes), variable, self.statements()))
            elif keyword == "else" and handlers and not else_body:
                else_body = self.statements() or [("text", "")]
            elif keyword == "ensure" and not ensure_body:
                ensure_body = self.statements() or [("text", "")]
            else:
                raise StructureError(self.tokens[self.pos - 1][2], f"unexpected <% {keyword} %>")
        self.depth -= 1
        return ("begin", body, handlers, else_body, ensure_body, tag)

    # -- expressions
    def expression(self) -> tuple:
        self.enter()
        try:
            return self.ternary()
        finally:
            self.depth -= 1

    def ternary(self) -> tuple:
        cond = self.logical_or()
        if self.accept("op", "?"):
            self.skip_nl()
            then = self.expression()
            self.skip_nl()
            self.take("op", ":")
            self.skip_nl()
            return ("cond", cond, then, self.expression())
        return cond

    def _chain(self, name: str, operator: str, operand: Any) -> tuple:
        terms = [operand()]
        while self.accept("op", operator):
            self.skip_nl()
            terms.append(operand())
        return terms[0] if len(terms) == 1 else (name, terms)

    def logical_or(self) -> tuple:
        return self._chain("or", "||", self.logical_and)

    def logical_and(self) -> tuple:
        return self._chain("and", "&&", self.negation)

    def negation(self) -> tuple:
        if self.accept("op", "!"):
            self.enter()
            node = ("not", self.negation())
            self.depth -= 1
            return node
        return self.equality()

    def equality(self) -> tuple:
        node = self.additive()
        if self.peek("op", "==") or self.peek("op", "!="):
            op = self.take("op")
            self.skip_nl()
            node = ("eq" if op == "==" else "ne", node, self.additive())
        return node

    def additive(self) -> tuple:
        terms: list = [self.unary()]
        operators: list[str] = []
        while self.peek("op", "+") or self.peek("op", "-"):
            operators.append(self.take("op"))
            self.skip_nl()
            terms.append(self.unary())
        return terms[0] if not operators else ("arith", terms, operators)

    def unary(self) -> tuple:
        if self.peek("op", "-") and self.peek("lit", None, 1) \
                and isinstance(self.tokens[self.pos + 1][1], (int, float)):
            self.pos += 2
            return self.postfix(("lit", -self.tokens[self.pos - 1][1]))
        if self.peek("op", "!"):
            return self.negation()
        return self.postfix(self.primary())

    def postfix(self, node: tuple) -> tuple:
        length = 0
        while True:
            safe = False
            if self.peek("op", ".") or self.peek("op", "&."):
                safe = self.take("op") == "&."
            elif self.peek("nl") and self.leading_dot():
                self.skip_nl()
                safe = self.take("op") == "&."
            elif self.peek("op", "[") and node[0] not in ("lit",):
                self.pos += 1
                args = self.arguments("]")
                node = ("index", node, args)
                length += 1
                self.check_chain(length)
                continue
            else:
                return node
            self.skip_nl()
            name = self.take("ident")
            node = self.call(node, name, safe)
            length += 1
            self.check_chain(length)

    def check_chain(self, length: int) -> None:
        if self.depth + length > MAX_DEPTH:
            raise TooDeep

    def leading_dot(self) -> bool:
        index = self.pos
        while index < len(self.tokens) and self.tokens[index][0] == "nl":
            index += 1
        return index < len(self.tokens) and self.tokens[index][0] == "op" and self.tokens[index][1] in (".", "&.")

    def call(self, receiver: tuple | None, name: str, safe: bool) -> tuple:
        """A method call after its name: arguments (with or without parentheses) and a block."""
        if receiver is not None and receiver[0] == "const":
            if name not in CONSTANT_METHODS[receiver[1]]:
                raise Unsupported(f"{receiver[1]}.{name}")
        elif receiver is None:
            if name not in FUNCTIONS:
                raise Unsupported(name)
        elif name in _LOOPS and self.peek("ident", "do"):
            return self.loop(receiver, name)
        elif name not in VALUE_METHODS:
            raise Unsupported(f"method {name}")
        args: list = []
        if self.accept("op", "("):
            args = self.arguments(")")
        elif self.starts_command_argument():
            args = [self.expression()]
            while self.accept("op", ","):
                self.skip_nl()
                args.append(self.expression())
        block = None
        if self.peek("bpass") and not args:
            block = ("bpass", self.take("bpass"))
        elif args and args[-1][0] == "bpass":
            block = args.pop()
        elif self.peek("op", "{"):
            block = self.block()
        if name == "require" and receiver is None and args not in ([("lit", "dotenv")], [("lit", "dotenv/load")]):
            raise Unsupported("require")  # only dotenv is known; other libraries would need their Ruby
        return ("call", receiver, name, args, block, safe)

    def loop(self, receiver: tuple, name: str) -> tuple:
        """``list.each do |x| ... end`` (also ``each_with_index``): a statement whose body may hold text."""
        tag = self.tag()
        self.take("ident", "do")
        self.enter()
        params: list[str] = []
        if self.accept("op", "|"):
            params.append(self.take("ident"))
            while self.accept("op", ","):
                params.append(self.take("ident"))
            self.take("op", "|")
        if len(params) > _LOOPS[name]:
            raise Unsupported("block parameters")
        added = [param for param in params if param not in self.locals]
        self.locals.update(params)
        body = self.statements()
        if not self.accept("ident", "end"):
            raise StructureError(tag, f"missing <% end %> for this <% {name} do %>")
        self.locals.difference_update(added)
        self.depth -= 1
        return ("loop", receiver, name, params, body, tag)

    def starts_command_argument(self) -> bool:
        """``File.read "x"``, ``Dotenv.load ".env"``: a call's first argument without parentheses."""
        return any(self.peek(kind) for kind in ("lit", "dstr", "sh", "words", "sym")) or (
            self.peek("ident") and self.tokens[self.pos][1] not in ("if", "unless", "rescue", "then", "and", "or",
                                                                      "do", "end")
        )

    def arguments(self, closer: str) -> list:
        self.enter()
        args: list = []
        self.skip_nl()
        while not self.accept("op", closer):
            if args:
                self.take("op", ",")
                self.skip_nl()
            if self.peek("bpass"):
                args.append(("bpass", self.take("bpass")))
            else:
                args.append(self.expression())
            self.skip_nl()
        self.depth -= 1
        return args

    def block(self) -> tuple:
        self.take("op", "{")
        self.enter()
        param = None
        if self.accept("op", "|"):
            param = self.take("ident")
            self.take("op", "|")
        added = param is not None and param not in self.locals
        if param:
            self.locals.add(param)
        body = self.expression()
        if added:
            self.locals.discard(param)
        self.take("op", "}")
        self.depth -= 1
        return ("block", param, body)

    def primary(self) -> tuple:
        if self.peek("lit"):
            return ("lit", self.take("lit"))
        if self.peek("dstr") or self.peek("sh"):
            kind = self.tokens[self.pos][0]
            parts = self.take(kind)
            if kind == "dstr" and all(isinstance(part, str) for part in parts):
                return ("lit", "".join(parts))
            node = ("interp", [self.interpolation(part) for part in parts])
            return ("sh", node) if kind == "sh" else node
        if self.peek("words"):
            return ("array", [("lit", word) for word in self.take("words")])
        if self.peek("sym"):
            return ("lit", self.take("sym"))  # symbols only reach `to_s`-like uses: their name
        if self.accept("op", "("):
            self.skip_nl()
            node = self.expression()
            self.skip_nl()
            self.take("op", ")")
            return node
        if self.accept("op", "["):
            return ("array", self.arguments("]"))
        name = self.take("ident")
        if name in ("nil", "true", "false"):
            return ("lit", {"nil": None, "true": True, "false": False}[name])
        if name in self.locals:
            return ("var", name)
        if name in CONSTANT_METHODS:
            return ("const", name)
        return self.call(None, name, False)

    def interpolation(self, part: Any) -> tuple:
        if isinstance(part, str):
            return ("lit", part)
        inner = Parser(part, self.tags)
        inner.locals = self.locals
        inner.depth = self.depth + 1
        if inner.depth > MAX_DEPTH:
            raise TooDeep
        node = inner.expression() if part else ("lit", "")
        inner.skip_nl()
        if inner.pos != len(part):
            raise Unsupported("trailing code")
        return node


class StructureError(Exception):
    """A block keyword out of place: the message and the tag it is in."""

    def __init__(self, tag: int, message: str) -> None:
        super().__init__(message)
        self.tag = tag


