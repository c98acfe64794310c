#!/usr/bin/env python3
"""Remove the rsync first sync and the cron sync job from the sidecar's secondary entrypoint.

    strip_first_sync.py [--report FILE] [ENTRYPOINT] > STRIPPED

Build-time tool of docker/Dockerfile (standard library only, Python >= 3.11). It reads the
base image's /root/entrypoint.sh (ENTRYPOINT, default stdin), writes it without its sync
machinery to stdout, and prints what it removed, line by line, on stderr (and to FILE).

How. The script is tokenized and parsed the way bash reads it (quotes, escapes, comments,
`$(...)`, backquotes, `${...}`, here-documents, `[[ ]]`, `(( ))`, functions, if/while/until/
for/case, pipelines and lists) into its top-level statements, each with the lines it spans.
Only these top-level statements are removed, and only whole lines:

- the `RSYNC_CMD="rsync ..."` assignment;
- the first-sync retry loop: one while/until loop in which every command is a piece of the
  sync (`su -c "$RSYNC_CMD" xroad` or another rsync call, `| sed '...'` after it, `break`,
  `sleep N`, `exit N`, `:`, `RC=$?`, `[[ $RC -ne 0 ]]`);
- the cron job: `echo "<schedule> xroad ...rsync..." > /etc/cron.d/xroad-state-sync`, and
  the `chown`/`chmod` of that file.

Anything else stays byte for byte, comments and log lines included. It refuses (exit 1, the
line named, nothing on stdout) rather than guess: a statement it cannot parse, a loop with
anything but sync commands in it, no such loop or more than one, a removable statement sharing
a line with another one, and any kept statement that still mentions rsync, RSYNC_CMD or
xroad-state-sync (say the sync moved into a function or an `if`).

Then it proves the result, independently of how it was made: the output is the input with
whole lines deleted (a line diff has only deletions); parsed again, its statements are the
input's minus the removed ones, token for token; nothing kept mentions the sync; it still ends
by exec'ing supervisord; and bash itself (`bash -n`) accepts the output, each removed block on
its own and everything before each removed block, and rejects each multi-line removed block cut
short by its last line, so bash and this parser agree on where the removed statements begin
and end.
"""

from __future__ import annotations

import argparse
import bisect
import difflib
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CRON_FILE = "/etc/cron.d/xroad-state-sync"
LOOP = "first-sync retry loop"
MENTIONS_SYNC = re.compile(r"rsync|RSYNC_CMD|xroad-state-sync", re.IGNORECASE)
RESERVED = frozenset((
    "if", "then", "elif", "else", "fi", "do", "done", "case", "esac", "while", "until", "for",
    "select", "function", "time", "coproc", "{", "}", "!", "[[",
))
OPERATORS = (  # longest first
    ";;&", "<<-", "<<<", "&>>", "&&", "||", ";;", ";&", "|&", "<<", ">>", "<&", ">&", "<>",
    ">|", "&>", "|", "&", ";", "(", ")", "<", ">",
)
REDIRECTS = frozenset(("<", ">", ">>", "<<", "<<-", "<<<", "<>", "<&", ">&", ">|", "&>", "&>>"))
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")
BLANKS = " \t"
METACHARS = " \t\n|&;()<>"


class Refused(Exception):
    """The entrypoint cannot be stripped safely; the message names the line."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


# ---- tokens and syntax tree --------------------------------------------------------------------


@dataclass
class HereDoc:
    delimiter: str
    strip_tabs: bool
    line: int
    body: str = ""
    start: int = 0  # first line of the body
    end: int = 0  # line of the delimiter that closes it


@dataclass
class Word:
    raw: str  # as written
    value: str  # quotes and escapes removed; expansions kept as written
    line: int
    end: int
    plain: bool  # no quotes, escapes or expansions
    commands: bool  # holds a command substitution (`$(...)`, backquotes, `<(...)`)
    params: bool  # holds a parameter or arithmetic expansion


@dataclass
class Token:
    kind: str  # word, op, io, arith, nl, eof
    text: str
    line: int
    end: int
    word: Word | None = None


@dataclass
class Redirect:
    op: str
    target: Word
    heredoc: HereDoc | None = None


@dataclass
class Simple:
    assigns: list[Word]
    words: list[Word]
    redirects: list[Redirect]
    line: int


@dataclass
class Compound:
    kind: str  # while until for select if case brace subshell cond arith function
    line: int
    words: list[Word] = field(default_factory=list)  # for/case words, cond words, name
    bodies: list[list[AndOr]] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)
    function_body: Command | None = None


Command = Simple | Compound


@dataclass
class Pipeline:
    commands: list[Command]
    ops: list[str]
    negated: bool


@dataclass
class AndOr:
    pipelines: list[Pipeline]
    ops: list[str]
    line: int
    end: int = 0
    sep: str = ""
    tokens: list[str] = field(default_factory=list)


# ---- lexer -----------------------------------------------------------------------------------


class Lexer:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.pending: list[HereDoc] = []
        self.heredocs: list[HereDoc] = []

    def line_at(self, i: int) -> int:
        return bisect.bisect_right(self.starts, i)

    def fail(self, i: int, message: str) -> Refused:
        return Refused(self.line_at(i), f"cannot parse: {message}")

    def peek_char(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def skip_blanks(self) -> None:
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c in BLANKS:
                self.i += 1
            elif c == "\\" and self.peek_char(1) == "\n":
                self.i += 2
            elif c == "#":
                j = s.find("\n", self.i)
                self.i = len(s) if j < 0 else j
            else:
                break

    def next(self) -> Token:
        self.skip_blanks()
        s, start = self.s, self.i
        if start >= len(s):
            return Token("eof", "", self.line_at(start), self.line_at(start))
        line = self.line_at(start)
        c = s[start]
        if c == "\n":
            self.i += 1
            self.read_heredoc_bodies()
            return Token("nl", "\n", line, line)
        if s.startswith("((", start):
            # An arithmetic command, unless it does not close with `))`: then, as for bash, a
            # subshell in a subshell.
            try:
                end = self.skip_parens(start + 1, depth=1)
            except Refused:
                end = 0
            if s[end - 2 : end] == "))":
                self.i = end
                return Token("arith", s[start:end], line, self.line_at(end - 1))
        if c in "<>" and self.peek_char(1) == "(":
            return self.word_token()  # process substitution
        if c.isdigit():
            j = start
            while j < len(s) and s[j].isdigit():
                j += 1
            if j < len(s) and s[j] in "<>":
                self.i = j
                return Token("io", s[start:j], line, line)
        for op in OPERATORS:
            if s.startswith(op, start):
                self.i += len(op)
                return Token("op", op, line, line)
        return self.word_token()

    def word_token(self, cond: bool = False) -> Token:
        w = self.read_word(cond)
        return Token("word", w.raw, w.line, w.end, w)

    def read_word(self, cond: bool = False) -> Word:
        s, start = self.s, self.i
        value: list[str] = []
        flags = {"plain": True, "commands": False, "params": False}
        while self.i < len(s):
            c = s[self.i]
            if c in "<>" and self.peek_char(1) == "(" and not cond:
                self.i += 2
                self.sub_parse()
                flags.update(plain=False, commands=True)
                value.append(s[self.i - 1])  # approximate: the raw text is what is matched
                continue
            if c in (BLANKS + "\n" if cond else METACHARS):
                break
            if c == "\\":
                if self.peek_char(1) == "\n":
                    self.i += 2
                    continue
                value.append(self.peek_char(1))
                self.i += 2
                flags["plain"] = False
            elif c == "'":
                j = s.find("'", self.i + 1)
                if j < 0:
                    raise self.fail(self.i, "a single quote that never closes")
                value.append(s[self.i + 1 : j])
                self.i = j + 1
                flags["plain"] = False
            elif c == '"':
                value.append(self.read_dquote(flags))
                flags["plain"] = False
            elif c == "`":
                value.append(self.read_backquote())
                flags.update(plain=False, commands=True)
            elif c == "$":
                value.append(self.read_dollar(flags))
            elif c in "?*+@!" and self.peek_char(1) == "(" and self.i > start:
                j = self.skip_parens(self.i + 2, depth=1)
                value.append(s[self.i : j])
                self.i = j
            elif c == "=" and self.peek_char(1) == "(" and ASSIGNMENT.fullmatch(
                s[start : self.i + 1]
            ):
                j = self.skip_parens(self.i + 2, depth=1)
                value.append(s[self.i : j])
                self.i = j
                flags["plain"] = False
            else:
                value.append(c)
                self.i += 1
        if self.i == start:
            raise self.fail(start, f"unexpected {s[start]!r}")
        return Word(s[start : self.i], "".join(value), self.line_at(start),
                    self.line_at(self.i - 1), **flags)

    def read_dquote(self, flags: dict[str, bool]) -> str:
        s, start = self.s, self.i
        self.i += 1
        out: list[str] = []
        while self.i < len(s):
            c = s[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "\\":
                nxt = self.peek_char(1)
                if nxt == "\n":
                    self.i += 2
                    continue
                out.append(nxt if nxt in '$`"\\' else "\\" + nxt)
                self.i += 2
            elif c == "`":
                out.append(self.read_backquote())
                flags["commands"] = True
            elif c == "$":
                out.append(self.read_dollar(flags, quoted=True))
            else:
                out.append(c)
                self.i += 1
        raise self.fail(start, "a double quote that never closes")

    def read_backquote(self) -> str:
        s, start = self.s, self.i
        j = start + 1
        while j < len(s) and s[j] != "`":
            j += 2 if s[j] == "\\" else 1
        if j >= len(s):
            raise self.fail(start, "a backquote that never closes")
        inner = re.sub(r"\\([$`\\])", r"\1", s[start + 1 : j])
        try:
            Parser(Lexer(inner)).program()
        except Refused as e:
            raise self.fail(start, f"inside backquotes: {e}") from None
        self.i = j + 1
        return s[start : self.i]

    def read_dollar(self, flags: dict[str, bool], quoted: bool = False) -> str:
        """One `$` expansion; inside double quotes ``quoted``, where `$'` and `$"` are not."""
        s, start = self.s, self.i
        nxt = self.peek_char(1)
        if quoted and nxt in ("'", '"'):
            nxt = ""
        if s.startswith("$((", start):
            self.i = self.skip_parens(start + 2, depth=1)
            flags.update(plain=False, params=True)
        elif nxt == "(":
            self.i += 2
            self.sub_parse()
            flags.update(plain=False, commands=True)
        elif nxt == "{":
            self.i = self.skip_braces(start + 2)
            flags.update(plain=False, params=True)
        elif nxt == "'":
            j = start + 2
            while j < len(s) and s[j] != "'":
                j += 2 if s[j] == "\\" else 1
            if j >= len(s):
                raise self.fail(start, "a $'...' quote that never closes")
            self.i = j + 1
            flags["plain"] = False
        elif nxt == '"':
            self.i += 1
            self.read_dquote(flags)
            flags["plain"] = False
        elif nxt and (nxt.isalnum() or nxt == "_"):
            j = start + 1
            if nxt.isdigit():
                j += 1
            else:
                while j < len(s) and (s[j].isalnum() or s[j] == "_"):
                    j += 1
            self.i = j
            flags.update(plain=False, params=True)
        elif nxt and nxt in "@*#?$!-":
            self.i += 2
            flags.update(plain=False, params=True)
        else:
            self.i += 1
        return s[start : self.i]

    def sub_parse(self) -> None:
        """`$(` or `<(` consumed: parse commands up to and including the matching `)`."""
        start = self.i
        parser = Parser(self)
        parser.statements({")"}, set())
        if parser.take().text != ")":
            raise self.fail(start, "`$(` without its `)`")

    def skip_parens(self, j: int, depth: int) -> int:
        """Index after the `)` that brings ``depth`` to 0 (quotes respected)."""
        s, start = self.s, j
        while j < len(s):
            c = s[j]
            if c == "\\":
                j += 2
                continue
            if c in "'\"":
                k = s.find(c, j + 1)
                if k < 0:
                    break
                j = k + 1
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        raise self.fail(start, "a parenthesis that never closes")

    def skip_braces(self, j: int) -> int:
        s, start, depth = self.s, j, 1
        while j < len(s):
            c = s[j]
            if c == "\\":
                j += 2
                continue
            if c == '"':
                save = self.i
                self.i = j
                self.read_dquote({"plain": False, "commands": False, "params": False})
                j, self.i = self.i, save
                continue
            if c == "'":
                k = s.find("'", j + 1)
                if k < 0:
                    break
                j = k + 1
                continue
            if c == "$" and s.startswith("$(", j) and not s.startswith("$((", j):
                save = self.i
                self.i = j + 2
                self.sub_parse()
                j, self.i = self.i, save
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        raise self.fail(start, "`${` without its `}`")

    def read_cond(self) -> list[Word]:
        """The words of `[[ ... ]]`, `[[` consumed, up to and including `]]`."""
        words: list[Word] = []
        start = self.i
        while True:
            self.skip_blanks()
            if self.i >= len(self.s):
                raise self.fail(start, "`[[` without `]]`")
            if self.s[self.i] == "\n":
                self.i += 1
                continue
            at = self.i
            w = self.read_word(cond=True)
            if w.raw == "]]":
                return words
            if w.raw.startswith("]]") and w.raw[2] in ";&|)<>":
                self.i = at + 2
                return words
            words.append(w)

    def read_heredoc_bodies(self) -> None:
        s = self.s
        for doc in self.pending:
            doc.start = self.line_at(self.i)
            body: list[str] = []
            while True:
                if self.i >= len(s):
                    raise Refused(doc.line, f"here-document never ends (no {doc.delimiter!r})")
                j = s.find("\n", self.i)
                end = len(s) if j < 0 else j + 1
                line = s[self.i : end]
                self.i = end
                check = line.rstrip("\n")
                if doc.strip_tabs:
                    check = check.lstrip("\t")
                if check == doc.delimiter:
                    doc.end = self.line_at(end - 1)
                    break
                body.append(line)
            doc.body = "".join(body)
            self.heredocs.append(doc)
        self.pending = []


# ---- parser ----------------------------------------------------------------------------------


class Parser:
    def __init__(self, lexer: Lexer) -> None:
        self.lx = lexer
        self.ahead: Token | None = None
        self.last_end = 1
        self.recording: list[str] | None = None

    def peek(self) -> Token:
        if self.ahead is None:
            self.ahead = self.lx.next()
        return self.ahead

    def take(self) -> Token:
        tok = self.peek()
        self.ahead = None
        if tok.kind != "eof":
            self.last_end = max(self.last_end, tok.end)
        if self.recording is not None and tok.kind not in ("nl", "eof"):
            self.recording.append(tok.text)
        return tok

    def fail(self, tok: Token, message: str) -> Refused:
        return Refused(tok.line, f"cannot parse: {message}")

    def is_word(self, tok: Token, *texts: str) -> bool:
        return (tok.kind == "word" and tok.word is not None and tok.word.plain
                and (not texts or tok.text in texts))

    def expect_word(self, text: str) -> Token:
        tok = self.take()
        if not self.is_word(tok, text):
            raise self.fail(tok, f"expected `{text}`, found {tok.text or 'the end'!r}")
        return tok

    def newlines(self) -> None:
        while self.peek().kind == "nl":
            self.take()

    # program := statement*, each a top-level and-or list with its lines
    def program(self) -> list[AndOr]:
        out: list[AndOr] = []
        while True:
            self.newlines()
            tok = self.peek()
            if tok.kind == "eof":
                return out
            self.recording = []
            stmt = self.and_or()
            tok = self.peek()
            if tok.kind == "op" and tok.text in (";", "&"):
                stmt.sep = self.take().text
            elif tok.kind in ("nl", "eof"):
                stmt.sep = tok.kind
            else:
                raise self.fail(tok, f"unexpected {tok.text!r}")
            stmt.end = self.last_end
            stmt.tokens = self.recording
            self.recording = None
            out.append(stmt)

    def statements(self, end_ops: set[str], end_words: set[str]) -> list[AndOr]:
        out: list[AndOr] = []
        while True:
            self.newlines()
            tok = self.peek()
            if tok.kind == "eof":
                raise self.fail(tok, "unexpected end of the script")
            if tok.kind == "op" and tok.text in end_ops:
                return out
            if self.is_word(tok, *end_words) and end_words:
                return out
            stmt = self.and_or()
            tok = self.peek()
            if tok.kind == "op" and tok.text in (";", "&"):
                stmt.sep = self.take().text
            stmt.end = self.last_end
            out.append(stmt)

    def and_or(self) -> AndOr:
        line = self.peek().line
        node = AndOr([self.pipeline()], [], line)
        while (tok := self.peek()).kind == "op" and tok.text in ("&&", "||"):
            node.ops.append(self.take().text)
            self.newlines()
            node.pipelines.append(self.pipeline())
        return node

    def pipeline(self) -> Pipeline:
        negated = False
        while self.is_word(self.peek(), "!", "time"):
            negated |= self.take().text == "!"
        node = Pipeline([self.command()], [], negated)
        while (tok := self.peek()).kind == "op" and tok.text in ("|", "|&"):
            node.ops.append(self.take().text)
            self.newlines()
            node.commands.append(self.command())
        return node

    def redirect(self) -> Redirect:
        tok = self.take()
        if tok.kind == "io":
            tok = self.take()
        if tok.kind != "op" or tok.text not in REDIRECTS:
            raise self.fail(tok, f"expected a redirection, found {tok.text!r}")
        target = self.take()
        if target.kind != "word" or target.word is None:
            raise self.fail(target, f"`{tok.text}` without a target")
        red = Redirect(tok.text, target.word)
        if tok.text in ("<<", "<<-"):
            red.heredoc = HereDoc(target.word.value, tok.text == "<<-", tok.line)
            self.lx.pending.append(red.heredoc)
        return red

    def at_redirect(self) -> bool:
        tok = self.peek()
        return tok.kind == "io" or (tok.kind == "op" and tok.text in REDIRECTS)

    def command(self) -> Command:
        tok = self.peek()
        node: Command
        if tok.kind == "arith":
            self.take()
            node = Compound("arith", tok.line, words=[arith_word(tok)])
        elif tok.kind == "op" and tok.text == "(":
            self.take()
            node = Compound("subshell", tok.line, bodies=[self.statements({")"}, set())])
            self.take()
        elif self.is_word(tok) and tok.text in RESERVED:
            node = self.compound(tok)
        else:
            return self.simple()
        while self.at_redirect():
            node.redirects.append(self.redirect())
        return node

    def compound(self, tok: Token) -> Compound:
        kw = tok.text
        self.take()
        if kw in ("while", "until"):
            cond = self.statements(set(), {"do"})
            self.expect_word("do")
            body = self.statements(set(), {"done"})
            self.expect_word("done")
            return Compound(kw, tok.line, bodies=[cond, body])
        if kw == "if":
            bodies = [self.statements(set(), {"then"})]
            self.expect_word("then")
            bodies.append(self.statements(set(), {"elif", "else", "fi"}))
            while (nxt := self.take()).text != "fi":
                if nxt.text == "elif":
                    bodies.append(self.statements(set(), {"then"}))
                    self.expect_word("then")
                bodies.append(self.statements(set(), {"elif", "else", "fi"}))
            return Compound("if", tok.line, bodies=bodies)
        if kw in ("for", "select"):
            node = Compound(kw, tok.line)
            if self.peek().kind == "arith":
                node.words.append(arith_word(self.take()))
            else:
                name = self.take()
                if name.word is None:
                    raise self.fail(name, f"`{kw}` without a name")
                node.words.append(name.word)
                self.newlines()
                if self.is_word(self.peek(), "in"):
                    self.take()
                    while (w := self.peek()).kind == "word" and w.word is not None:
                        node.words.append(w.word)
                        self.take()
            if self.peek().kind == "op" and self.peek().text == ";":
                self.take()
            self.newlines()
            if self.is_word(self.peek(), "{"):
                self.take()
                node.bodies.append(self.statements(set(), {"}"}))
                self.expect_word("}")
                return node
            self.expect_word("do")
            node.bodies.append(self.statements(set(), {"done"}))
            self.expect_word("done")
            return node
        if kw == "case":
            subject = self.take()
            if subject.word is None:
                raise self.fail(subject, "`case` without a word")
            node = Compound("case", tok.line, words=[subject.word])
            self.newlines()
            self.expect_word("in")
            while True:
                self.newlines()
                if self.is_word(self.peek(), "esac"):
                    self.take()
                    return node
                if self.peek().text == "(" and self.peek().kind == "op":
                    self.take()
                while True:
                    pat = self.take()
                    if pat.word is None:
                        raise self.fail(pat, "a case pattern expected")
                    node.words.append(pat.word)
                    if not (self.peek().kind == "op" and self.peek().text == "|"):
                        break
                    self.take()
                close = self.take()
                if close.text != ")":
                    raise self.fail(close, "`)` expected after a case pattern")
                node.bodies.append(self.statements({";;", ";&", ";;&"}, {"esac"}))
                if self.peek().kind == "op" and self.peek().text in (";;", ";&", ";;&"):
                    self.take()
        if kw == "{":
            body = self.statements(set(), {"}"})
            self.expect_word("}")
            return Compound("brace", tok.line, bodies=[body])
        if kw == "[[":
            words = self.lx.read_cond()
            self.last_end = max(self.last_end, self.lx.line_at(self.lx.i - 1))
            if self.recording is not None:
                self.recording.extend([w.raw for w in words] + ["]]"])
            return Compound("cond", tok.line, words=words)
        if kw == "function":
            name = self.take()
            if name.word is None:
                raise self.fail(name, "`function` without a name")
            if self.peek().kind == "op" and self.peek().text == "(":
                self.take()
                if self.take().text != ")":
                    raise self.fail(name, "`(` without `)` after a function name")
            self.newlines()
            return Compound("function", tok.line, words=[name.word],
                            function_body=self.command())
        if kw == "coproc":
            raise self.fail(tok, "coproc is not supported")
        raise self.fail(tok, f"unexpected `{kw}`")

    def simple(self) -> Command:
        first = self.peek()
        node = Simple([], [], [], first.line)
        while True:
            tok = self.peek()
            if self.at_redirect():
                node.redirects.append(self.redirect())
            elif tok.kind == "word" and tok.word is not None:
                self.take()
                if not node.words and ASSIGNMENT.match(tok.text):
                    node.assigns.append(tok.word)
                    continue
                node.words.append(tok.word)
                nxt = self.peek()
                if (len(node.words) == 1 and not node.assigns and not node.redirects
                        and nxt.kind == "op" and nxt.text == "("):
                    self.take()
                    if self.take().text != ")":
                        raise self.fail(nxt, "`(` without `)` after a function name")
                    self.newlines()
                    return Compound("function", tok.line, words=[tok.word],
                                    function_body=self.command())
            else:
                break
        if not (node.assigns or node.words or node.redirects):
            raise self.fail(first, f"a command expected, found {first.text or 'the end'!r}")
        return node


def arith_word(tok: Token) -> Word:
    """An `(( ))` token as a word, so what is inside is searched like any other word."""
    return Word(tok.text, tok.text, tok.line, tok.end, plain=False, commands="$(" in tok.text
                or "`" in tok.text, params=True)


def parse(text: str) -> tuple[list[AndOr], list[HereDoc]]:
    lexer = Lexer(text)
    statements = Parser(lexer).program()
    if lexer.pending:
        raise Refused(lexer.pending[0].line, "here-document never ends")
    for stmt in statements:  # a statement's lines run to the end of its here-documents
        for doc in heredocs_of(stmt):
            stmt.end = max(stmt.end, doc.end)
            stmt.tokens.append(doc.body)
    return statements, lexer.heredocs


# ---- walking the tree ------------------------------------------------------------------------


def commands_of(stmts: list[AndOr]) -> Iterator[Command]:
    for stmt in stmts:
        for pipe in stmt.pipelines:
            for cmd in pipe.commands:
                yield cmd
                if isinstance(cmd, Compound):
                    for body in cmd.bodies:
                        yield from commands_of(body)
                    if cmd.function_body is not None:
                        yield from commands_of([AndOr([Pipeline([cmd.function_body], [],
                                                                False)], [], cmd.line)])


def words_of(cmd: Command) -> Iterator[Word]:
    if isinstance(cmd, Simple):
        yield from cmd.assigns
        yield from cmd.words
    else:
        yield from cmd.words
    for red in cmd.redirects:
        yield red.target


def heredocs_of(stmt: AndOr) -> Iterator[HereDoc]:
    for cmd in commands_of([stmt]):
        for red in cmd.redirects:
            if red.heredoc is not None:
                yield red.heredoc


KINDS = {"brace": "a { } block", "subshell": "a ( ) subshell", "cond": "a [[ ]] test",
         "arith": "an (( )) expression", "if": "an if statement", "case": "a case statement"}


def describe(cmd: Command) -> str:
    if isinstance(cmd, Simple):
        return f"the command `{cmd.words[0].raw}`" if cmd.words else "an assignment"
    if cmd.kind == "function":
        return f"the function {cmd.words[0].raw}()"
    return KINDS.get(cmd.kind, f"a {cmd.kind} loop")


# ---- what is sync machinery ------------------------------------------------------------------


def single(stmt: AndOr) -> Command | None:
    if len(stmt.pipelines) == 1 and len(stmt.pipelines[0].commands) == 1:
        pipe = stmt.pipelines[0]
        return None if pipe.negated else pipe.commands[0]
    return None


def literal(words: list[Word]) -> list[str] | None:
    """The words' values when none expands to anything, else None."""
    if any(w.params or w.commands for w in words):
        return None
    return [w.value for w in words]


def runs_rsync(cmd: Command) -> bool:
    """`rsync ...`, or `su -c "$RSYNC_CMD"|"rsync ..." xroad`, with no command substitution."""
    if not isinstance(cmd, Simple) or cmd.assigns or cmd.redirects or not cmd.words:
        return False
    if any(w.commands for w in cmd.words):
        return False
    first = cmd.words[0]
    if first.plain and first.value == "rsync":
        return True
    if len(cmd.words) != 4 or literal([cmd.words[0], cmd.words[1], cmd.words[3]]) != [
        "su", "-c", "xroad"
    ]:
        return False
    arg = cmd.words[2].value
    return arg == "$RSYNC_CMD" or arg.startswith("rsync ")


def loop_role(cmd: Command) -> str | None:
    """What one command inside the first-sync loop does, or None if it is not part of it."""
    if runs_rsync(cmd):
        return "rsync"
    if isinstance(cmd, Compound):
        if cmd.kind == "cond" and not cmd.redirects and [w.value for w in cmd.words] == [
            "$RC", "-ne", "0"
        ]:
            return "test"
        return None
    if cmd.redirects:
        return None
    if not cmd.words:
        return "status" if [w.raw for w in cmd.assigns] == ["RC=$?"] else None
    if cmd.assigns:
        return None
    words = literal(cmd.words)
    if words in ([":"], ["true"], ["break"]):
        return "control"
    if words and len(words) == 2 and words[0] in ("sleep", "exit") and words[1].isdigit():
        return "control"
    if words and len(words) == 2 and words[0] == "sed":
        return "sed"
    return None


def check_loop(stmt: AndOr, cmd: Compound) -> None:
    """Refuse unless every command in the loop is a piece of the sync."""
    for part in cmd.bodies:
        for inner in part:
            if inner.sep == "&":
                raise Refused(inner.line, "a background job inside the first-sync loop")
            for pipe in inner.pipelines:
                roles = [loop_role(c) for c in pipe.commands]
                ok = not pipe.negated and (
                    (len(roles) == 1 and roles[0] not in (None, "sed"))
                    or (len(roles) == 2 and roles == ["rsync", "sed"])
                )
                if not ok:
                    bad = next((c for c, r in zip(pipe.commands, roles, strict=True)
                                if r is None), pipe.commands[0])
                    raise Refused(
                        bad.line,
                        f"{describe(bad)} inside the {LOOP} ({span(stmt.line, stmt.end)}) is not "
                        "part of the sync; refusing to drop it with the loop",
                    )


def is_sync_loop(stmt: AndOr) -> bool:
    cmd = single(stmt)
    if not (isinstance(cmd, Compound) and cmd.kind in ("while", "until")):
        return False
    return any(runs_rsync(c) for c in commands_of(cmd.bodies[0] + cmd.bodies[1]))


def classify(stmt: AndOr) -> str | None:
    """The sync role of one top-level statement, or None when it is not sync machinery."""
    if stmt.sep == "&":
        return None
    if len(stmt.pipelines) > 1:
        if set(stmt.ops) == {"&&"} and all(
            len(p.commands) == 1 and not p.negated and cron_mode(p.commands[0])
            for p in stmt.pipelines
        ):
            return "owner and mode of the cron job file"
        return None
    cmd = single(stmt)
    if cmd is None:
        return None
    if is_sync_loop(stmt):
        assert isinstance(cmd, Compound)
        if cmd.redirects:
            return None
        check_loop(stmt, cmd)
        return LOOP
    if not isinstance(cmd, Simple):
        return None
    if (len(cmd.assigns) == 1 and not cmd.words and not cmd.redirects
            and cmd.assigns[0].raw.startswith("RSYNC_CMD=") and not cmd.assigns[0].commands
            and cmd.assigns[0].value.removeprefix("RSYNC_CMD=").startswith("rsync ")):
        return "RSYNC_CMD assignment"
    if cron_job(cmd):
        return "cron job"
    if cron_mode(cmd):
        return "owner and mode of the cron job file"
    return None


def cron_job(cmd: Simple) -> bool:
    if cmd.assigns or len(cmd.words) != 2 or not (cmd.words[0].plain
                                                  and cmd.words[0].value == "echo"):
        return False
    job = cmd.words[1]
    if job.commands or not re.match(r"(\S+\s+){5}xroad\s", job.value):
        return False
    if not ("$RSYNC_CMD" in job.value or re.search(r"\srsync\s", job.value)):
        return False
    return (len(cmd.redirects) == 1 and cmd.redirects[0].op in (">", ">>")
            and cmd.redirects[0].target.plain and cmd.redirects[0].target.value == CRON_FILE)


def cron_mode(cmd: Command) -> bool:
    if not isinstance(cmd, Simple) or cmd.assigns or cmd.redirects:
        return False
    words = literal(cmd.words)
    return (words is not None and len(words) == 3 and words[0] in ("chown", "chmod")
            and words[2] == CRON_FILE)


# ---- stripping and its proof -----------------------------------------------------------------


@dataclass
class Removal:
    role: str
    stmt: AndOr
    first: int  # 1-based line numbers, inclusive
    last: int


def plan(text: str) -> tuple[list[AndOr], list[Removal]]:
    if "\r" in text:
        raise Refused(text[: text.index("\r")].count("\n") + 1, "CR line ends")
    statements, _ = parse(text)
    removals: list[Removal] = []
    for stmt in statements:
        role = classify(stmt)
        if role is not None:
            removals.append(Removal(role, stmt, stmt.line, stmt.end))
    for role in {r.role for r in removals}:
        found = [r for r in removals if r.role == role]
        if len(found) > 1:
            raise Refused(found[1].first, f"a second {role} (the first is at line "
                                          f"{found[0].first}): an unknown shape")
    # Whole lines only: a removed statement may not share a line with any other statement.
    for r in removals:
        for stmt in statements:
            if stmt is not r.stmt and stmt.line <= r.last and stmt.end >= r.first:
                raise Refused(stmt.line, f"the {r.role} ({span(r.first, r.last)}) shares a "
                                         "line with another statement")
    return statements, removals


def mentions(stmts: list[AndOr], text: str) -> tuple[int, str] | None:
    """(line, what) of the first kept word or here-document that still names the sync."""
    lines = text.splitlines()
    for stmt in stmts:
        for cmd in commands_of([stmt]):
            for w in words_of(cmd):
                if MENTIONS_SYNC.search(w.raw):
                    where = next((n for n in range(w.line, w.end + 1)
                                  if MENTIONS_SYNC.search(lines[n - 1])), w.line)
                    return where, describe(top_command(stmt))
            for red in cmd.redirects:
                if red.heredoc and MENTIONS_SYNC.search(red.heredoc.body):
                    offset = next(i for i, ln in enumerate(red.heredoc.body.splitlines())
                                  if MENTIONS_SYNC.search(ln))
                    return red.heredoc.start + offset, "a here-document"
    return None


def top_command(stmt: AndOr) -> Command:
    return stmt.pipelines[0].commands[0]


def bash_n(text: str) -> str | None:
    """bash's complaint about ``text`` (syntax only), or None when it parses."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", encoding="utf-8",
                                     errors="surrogateescape") as f:
        f.write(text)
        f.flush()
        res = subprocess.run(["bash", "-n", f.name], capture_output=True, text=True)
    return None if res.returncode == 0 else (res.stderr.strip() or f"exit {res.returncode}")


def strip(text: str) -> tuple[str, list[Removal]]:
    statements, removals = plan(text)
    lines = text.splitlines(keepends=True)
    drop = {n for r in removals for n in range(r.first, r.last + 1)}
    out = "".join(line for n, line in enumerate(lines, 1) if n not in drop)
    kept = [s for s in statements if not any(s is r.stmt for r in removals)]
    found = mentions(kept, text)
    if found:
        line, what = found
        raise Refused(line, f"still names the rsync sync after the sync statements are removed "
                            f"({what}: `{lines[line - 1].strip()}`); only whole top-level sync "
                            "statements can be removed")
    if not any(r.role == LOOP for r in removals):
        raise Refused(None, f"no {LOOP} (a top-level while/until loop around rsync) found: is "
                            "BASE a sidecar *secondary* image?")
    prove(text, out, lines, removals, kept)
    return out, removals


def prove(text: str, out: str, lines: list[str], removals: list[Removal],
          kept: list[AndOr]) -> None:
    """Check the result from scratch; any failure is a bug here, and stops the build."""
    # 1. the input minus whole lines, nothing inserted or changed
    ops = difflib.SequenceMatcher(a=lines, b=out.splitlines(keepends=True),
                                  autojunk=False).get_opcodes()
    if any(op[0] not in ("equal", "delete") for op in ops):
        raise Refused(None, "proof failed: the output is not the input minus whole lines")
    deleted = sorted(n + 1 for tag, a0, a1, _, _ in ops if tag == "delete"
                     for n in range(a0, a1))
    if deleted != sorted(n for r in removals for n in range(r.first, r.last + 1)):
        raise Refused(None, "proof failed: the deleted lines are not the removed statements")
    # 2. parsed again: the same statements, token for token, minus the removed ones
    again, _ = parse(out)
    if [s.tokens for s in again] != [s.tokens for s in kept]:
        raise Refused(None, "proof failed: the kept statements changed")
    # 3. nothing kept names the sync, and the services still start
    if mentions(again, out):
        raise Refused(None, "proof failed: the output still names the sync")
    last = single(again[-1]) if again else None
    words = [w.value for w in last.words] if isinstance(last, Simple) else []
    if not (len(words) >= 2 and words[0] == "exec"
            and (words[1] == "supervisord" or words[1].endswith("/supervisord"))):
        raise Refused(again[-1].line if again else None,
                      "the entrypoint does not end by exec'ing supervisord")
    # 4. bash agrees: the output, each removed block alone and everything before it parse, and
    #    a multi-line block cut short does not (so it does not end earlier than we think)
    complaint = bash_n(out)
    if complaint:
        raise Refused(None, f"proof failed: bash rejects the output: {complaint}")
    for r in removals:
        block = "".join(lines[r.first - 1 : r.last])
        if bash_n(block) or bash_n("".join(lines[: r.first - 1])):
            raise Refused(r.first, f"proof failed: bash does not see the {r.role} as a whole "
                                   "statement")
        if r.last > r.first and not bash_n("".join(lines[r.first - 1 : r.last - 1])):
            raise Refused(r.first, f"proof failed: bash sees the {r.role} end before line "
                                   f"{r.last}")


def span(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


def report(text: str, removals: list[Removal]) -> str:
    lines = text.splitlines()
    total = sum(r.last - r.first + 1 for r in removals)
    out = [f"strip-first-sync: removed {len(removals)} statements, {total} lines; "
           "every other line is kept byte for byte:"]
    for r in removals:
        out.append(f"  {span(r.first, r.last)}: {r.role}")
        out += [f"  -{n:4d} {lines[n - 1]}" for n in range(r.first, r.last + 1)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("entrypoint", nargs="?", help="default: stdin")
    ap.add_argument("--report", help="also write the report of what was removed here")
    args = ap.parse_args(argv)
    data = Path(args.entrypoint).read_bytes() if args.entrypoint else sys.stdin.buffer.read()
    text = data.decode("utf-8", "surrogateescape")
    try:
        out, removals = strip(text)
    except Refused as e:
        print(f"strip-first-sync: refusing: {e}\n"
              "  The image build stops here rather than ship an entrypoint with a line dropped "
              "or a sync left in. Set SYNCAGENT_EXEC to a start command of your own, or teach "
              "docker/strip_first_sync.py this shape.", file=sys.stderr)
        return 1
    rep = report(text, removals)
    sys.stderr.write(rep)
    if args.report:
        Path(args.report).write_text(rep, encoding="utf-8", errors="surrogateescape")
    sys.stdout.buffer.write(out.encode("utf-8", "surrogateescape"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
