#!/usr/bin/env python3
"""Build the reproducible English text corpus used to train/calibrate/evaluate the reference LMs.

Source: Debian (bookworm) documentation packages, fetched with ``apt-get download`` (no model or
data-set hub needed), unpacked with ``dpkg-deb -x`` into a temporary directory, and cleaned to plain
prose: HTML through the stdlib ``html.parser``, reStructuredText / Markdown / POD through small
line-based cleaners that drop directives, code blocks, doctests and tables and keep the prose.

Documents (one source file = one document) are split into train / calib / eval by a deterministic
hash of the document id (``<package>/<path inside the .deb>``), so a document never appears in two
splits. Repeated boilerplate paragraphs are removed, long paragraphs are de-duplicated across the
whole corpus (first occurrence wins) and exact duplicate documents are dropped, so no text is
shared between the splits either.

Outputs (under ``--out``, default ``benchmarks/data/corpus``; git-ignored)::

    train.txt calib.txt eval.txt   one document per block, paragraphs on single lines,
                                   documents separated by one blank line
    documents.jsonl                one line per kept document: id, package, split, chars, sha256
    manifest.json                  packages (version, .deb sha256, licences), sizes, sha256s, config
    licenses/<pkg>.copyright       the package's /usr/share/doc/<pkg>/copyright

It also writes the small slices that ship in the repository (``--assets-dir``, default
``quamba_edge/assets/text``): ``calib.txt`` and ``eval.txt`` (<= 1 MB each) drawn only from the
calib / eval documents of the permissively licensed Python documentation (PSF licence), plus
``SOURCE.md``.

Usage::

    python benchmarks/corpus.py --out benchmarks/data/corpus            # default package set
    python benchmarks/corpus.py --packages python3.11-doc linux-doc-6.1  # a subset
    python benchmarks/corpus.py --list-packages

Needs ``apt-get`` and ``dpkg-deb`` (Debian/Ubuntu) with package lists present (``apt-get update``).
Downloaded .debs are cached in ``--cache-dir`` (default ``benchmarks/data/debs``). Re-running with
the same .debs and options produces byte-identical outputs; if the outputs are already up to date
the run is skipped (``--force`` rebuilds).
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import hashlib
import html
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterable, Sequence

try:  # progress bars are nice-to-have, never required
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    def tqdm(it=None, **kw):  # type: ignore[no-redef]
        return it if it is not None else _NullBar()

    class _NullBar:
        def update(self, *a):
            pass

        def close(self):
            pass

        def set_postfix_str(self, *a, **k):
            pass


REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_FORMAT_VERSION = 1
SPLITS = ("train", "calib", "eval")
SHIP_MAX_BYTES = 1_000_000  # each shipped slice stays <= 1 MB


# --------------------------------------------------------------------------------------------------
# Package registry
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageSpec:
    """One Debian documentation package and which files inside it are documents."""

    name: str
    include: tuple[str, ...]  # fnmatch patterns on the path inside the .deb ('*' also matches '/')
    licence: str  # curated summary; the copyright file itself is parsed and stored too
    exclude: tuple[str, ...] = ()
    shippable: bool = False  # may slices of it ship inside the repository (permissive licence)
    note: str = ""
    copyright_from: str = ""  # /usr/share/doc/<pkg> is a symlink to this (earlier) package's dir


_SPHINX_EXCLUDE = ("*/_modules/*", "*/_static/*", "*/genindex*", "*/search.html", "*/py-modindex*",
                   "*/_images/*", "*/_downloads/*")

PACKAGES: dict[str, PackageSpec] = {p.name: p for p in [
    PackageSpec("python3.11-doc", ("usr/share/doc/python3.11/html/_sources/*.rst.txt",),
                "PSF-2.0", exclude=("*/whatsnew/changelog.rst.txt",), shippable=True,
                note="Python 3.11 documentation (reST sources)"),
    PackageSpec("linux-doc-6.1", ("usr/share/doc/linux-doc-6.1/Documentation/*.rst.gz",),
                "GPL-2.0", exclude=("*/Documentation/translations/*",),
                note="Linux kernel Documentation/ (reST), English only"),
    PackageSpec("llvm-15-doc", ("usr/share/doc/llvm-15-doc/html/_sources/*.rst.txt",
                                "usr/share/doc/llvm-15-doc/html/_sources/*.md.txt"),
                "Apache-2.0 WITH LLVM-exception"),
    PackageSpec("clang-15-doc", ("usr/share/doc/clang-15/html/_sources/*.rst.txt",
                                 "usr/share/doc/clang-15/html/_sources/*.md.txt"),
                "Apache-2.0 WITH LLVM-exception"),
    PackageSpec("postgresql-doc-15", ("usr/share/doc/postgresql-doc-15/html/*.html",),
                "PostgreSQL"),
    PackageSpec("python-django-doc", ("usr/share/doc/python-django-doc/html/*.html",),
                "BSD-3-Clause", exclude=_SPHINX_EXCLUDE),
    PackageSpec("python-sqlalchemy-doc", ("usr/share/doc/python-sqlalchemy-doc/html/*.html",),
                "MIT", exclude=_SPHINX_EXCLUDE),
    PackageSpec("perl-doc", ("usr/share/perl/*/pod/*.pod",), "GPL-1.0+ OR Artistic-1.0",
                exclude=("*/perldelta.pod", "*/perl5*delta.pod", "*/perlhist.pod")),
    PackageSpec("rust-doc", tuple(f"usr/share/doc/rust-doc/html/{b}/*.html" for b in (
                    "book", "reference", "nomicon", "rustc", "edition-guide", "embedded-book",
                    "rust-by-example", "std")),
                "MIT OR Apache-2.0",
                exclude=("*/print.html", "*/first-edition/*", "*/second-edition/*", "*/2018-edition/*",
                         "*/std/arch/*", "*/std/os/*", "*/std/intrinsics/*", "*/std/simd/*",
                         "*/all.html", "*/toc.html"),
                note="Rust books (The Book, Reference, Nomicon, ...) and std API docs"),
    PackageSpec("erlang-doc", ("usr/share/doc/erlang-doc/*.html",), "Apache-2.0",
                exclude=("*/notes.html", "*/release_notes.html", "*/index.html", "*/*_index.html")),
    PackageSpec("openjdk-17-doc", tuple(f"usr/share/doc/openjdk-17-jre-headless/api/{m}/*.html" for m in (
                    "java.base", "java.sql", "java.net.http", "java.logging", "java.naming")),
                "GPL-2.0 WITH Classpath-exception-2.0",
                exclude=("*/class-use/*", "*-summary.html", "*-tree.html"),
                note="Java SE 17 API documentation (java.base, java.sql, java.net.http, java.logging, java.naming)"),
    PackageSpec("manpages", ("usr/share/man/man*",), "GPL-2.0+ AND Linux-man-pages-copyleft AND BSD",
                note="Linux man-pages project: sections 1, 4, 5, 7, 8"),
    PackageSpec("manpages-dev", ("usr/share/man/man*",), "GPL-2.0+ AND Linux-man-pages-copyleft AND BSD",
                copyright_from="manpages", note="Linux man-pages project: sections 2, 3"),
    PackageSpec("python-sklearn-doc", ("usr/share/doc/python-sklearn-doc/html/_sources/*.rst.txt",),
                "BSD-3-Clause", exclude=("*/modules/generated/*", "*/auto_examples/*")),
    PackageSpec("nodejs-doc", ("usr/share/doc/nodejs/api/*.html",), "MIT",
                exclude=("*/all.html", "*/index.html")),
    PackageSpec("git-doc", ("usr/share/doc/git-doc/*.html",), "GPL-2.0",
                exclude=("*/RelNotes/*",)),
    PackageSpec("apache2-doc", ("usr/share/doc/apache2-doc/manual/en/*.html",), "Apache-2.0",
                exclude=("*/sitemap.html", "*/quickreference.html", "*/directives.html")),
    PackageSpec("python-astropy-doc", ("usr/share/doc/python-astropy-doc/html/_sources/*.rst.txt",),
                "BSD-3-Clause", exclude=("*/api/*", "*/changelog*")),
    PackageSpec("python-sympy-doc", ("usr/share/doc/python-sympy-doc/html/_sources/*.rst.txt",
                                     "usr/share/doc/python-sympy-doc/html/_sources/*.md.txt"),
                "BSD-3-Clause"),
    PackageSpec("python-pandas-doc", ("usr/share/doc/python-pandas-doc/html/_sources/*.rst.txt",),
                "BSD-3-Clause", exclude=("*/reference/api/*", "*/whatsnew/*")),
    PackageSpec("python-statsmodels-doc",
                ("usr/share/doc/python-statsmodels-doc/html/_sources/*.rst.txt",),
                "BSD-3-Clause", exclude=("*/generated/*", "*/release/*")),
    PackageSpec("python-dask-doc", ("usr/share/doc/python-dask-doc/html/_sources/*.rst.txt",),
                "BSD-3-Clause", exclude=("*/generated/*", "*/changelog*")),
    PackageSpec("python-xarray-doc", ("usr/share/doc/python-xarray-doc/html/_sources/*.rst.txt",),
                "Apache-2.0", exclude=("*/generated/*", "*/whats-new*")),
    PackageSpec("sphinx-doc", ("usr/share/doc/sphinx-doc/html/_sources/*.rst.txt",),
                "BSD-2-Clause", exclude=("*/changes.rst.txt",)),
    PackageSpec("rsyslog-doc", ("usr/share/doc/rsyslog-doc/html/_sources/*.rst.txt",),
                "Apache-2.0"),
    PackageSpec("octave-doc", ("usr/share/doc/octave/*.html",), "GPL-3.0+"),
    PackageSpec("gnuplot-doc", ("usr/share/doc/gnuplot/htmldocs/*.html",), "gnuplot"),
    PackageSpec("python-scipy-doc", ("usr/share/doc/python-scipy-doc/html/*.html",), "BSD-3-Clause",
                exclude=_SPHINX_EXCLUDE + ("*/generated/*", "*/release/*")),
    PackageSpec("python-flask-doc", ("usr/share/doc/python-flask-doc/html/_sources/*.rst.txt",),
                "BSD-3-Clause", exclude=("*/changes.rst.txt",)),
    PackageSpec("python-setuptools-doc",
                ("usr/share/doc/python-setuptools-doc/html/_sources/*.rst.txt",), "MIT",
                exclude=("*/history.rst.txt",)),
    PackageSpec("docutils-doc", ("usr/share/doc/docutils-doc/docs/*.html",), "BSD-2-Clause"),
    PackageSpec("debian-policy", ("usr/share/doc/debian-policy/policy.html/_sources/*.rst.txt",),
                "GPL-2.0+"),
    PackageSpec("developers-reference", ("usr/share/developers-reference/_sources/*.rst.txt",),
                "GPL-2.0"),
    PackageSpec("debian-reference-en", ("usr/share/debian-reference/*.en.html",), "GPL-2.0+"),
    PackageSpec("debian-handbook", ("usr/share/doc/debian-handbook/html/en-US/*.html",),
                "GPL-2.0+ OR CC-BY-SA-3.0"),
    PackageSpec("maint-guide", ("usr/share/doc/maint-guide/html/*.en.html",), "GPL-2.0+"),
]}

DEFAULT_PACKAGES: tuple[str, ...] = tuple(PACKAGES)

# --------------------------------------------------------------------------------------------------
# Shared text helpers
# --------------------------------------------------------------------------------------------------

_STOPWORDS = frozenset("""
a an the and or but if then else of to in on at by for with from as is are was were be been being
this that these those it its it's not no can may must should will would do does did have has had
which who what when where how than so such there their they them we you your our he she his her i
into also all any each more most other some only one two use used using see about over under
""".split())

_WS_RE = re.compile(r"\s+")
_CTRL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\u200e\u200f\ufeff]")
_WORD_RE = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


def normalize_ws(text: str) -> str:
    """NFC-normalise, drop control / zero-width characters and collapse all whitespace to spaces."""
    text = unicodedata.normalize("NFC", text)
    text = _CTRL_RE.sub("", text)
    return _WS_RE.sub(" ", text).strip()


def stopword_fraction(text: str) -> float:
    words = _WORD_RE.findall(text)
    if not words:
        return 0.0
    return sum(w.lower() in _STOPWORDS for w in words) / len(words)


def is_prose(par: str) -> bool:
    """Heuristic: keep paragraphs of natural language, drop leftovers of code, tables, listings."""
    nonspace = len(par) - par.count(" ")
    if nonspace == 0:
        return False
    letters = sum(c.isalpha() for c in par)
    if letters < 2 or letters / nonspace < 0.6:
        return False
    words = par.split()
    if len(words) >= 10 and stopword_fraction(par) < 0.05:  # lists of identifiers, keywords, names
        return False
    return True


def finalize_paragraphs(paras: Iterable[str]) -> list[str]:
    out = []
    for p in paras:
        p = normalize_ws(p)
        if p and is_prose(p):
            out.append(p)
    return out


# --------------------------------------------------------------------------------------------------
# reStructuredText
# --------------------------------------------------------------------------------------------------

# Directives whose *body* is prose (kept, dedented, cleaned recursively). Everything else -- code,
# literalinclude, math, tables, toctree, images, index, raw, substitutions, targets, comments ... --
# is dropped together with its indented body.
_RST_KEEP_BODY = frozenset("""
note warning seealso important tip hint attention caution danger error admonition topic sidebar
rubric centered epigraph highlights pull-quote compound container only glossary impl-detail
versionadded versionchanged deprecated deprecated-removed
function method class attribute data exception decorator decoratormethod classmethod staticmethod
abstractmethod coroutinefunction coroutinemethod property describe object opcode pdbcommand
cmdoption option envvar 2to3fixer type member macro var struct union enum enumerator
tab tab-item tab-set tabs dropdown card grid-item-card
""".split())
# Directives whose argument (the text after '::') is prose: kept as its own paragraph.
_RST_TEXT_ARG = frozenset("""
note warning seealso important tip hint attention caution danger error admonition topic sidebar
rubric centered impl-detail
""".split())
# Version directives: '.. versionchanged:: 3.3 Text...' keeps 'Text...'.
_RST_VERSION_ARG = {"versionadded": 1, "versionchanged": 1, "deprecated": 1, "deprecated-removed": 2}
# Object-description directives: lines right after the directive (before the first blank line) are
# more signatures, not prose.
_RST_SIGNATURE = frozenset("""
function method class attribute data exception decorator decoratormethod classmethod staticmethod
abstractmethod coroutinefunction coroutinemethod property describe object opcode pdbcommand
cmdoption option envvar 2to3fixer type member macro var struct union enum enumerator
""".split())

_RST_EXPLICIT_RE = re.compile(r"^\.\.(?:\s|$)")
_RST_DIRECTIVE_RE = re.compile(r"^\.\.\s+([\w:.+-]+)::(?:\s+(.*))?$")
_RST_OPTION_RE = re.compile(r"^:[\w -]+:(?:\s|$)")
_RST_ADORN_RE = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}$")
_RST_SIMPLE_TABLE_RE = re.compile(r"^=+(?:\s+=+)+$")
_RST_BULLET_RE = re.compile(r"^([-*+\u2022]|\d+[.)]|#[.)]|\(\d+\))\s+")
_RST_FIELD_RE = re.compile(r"^:(?!\s)([^:`]+?):(?:\s+|$)")
_RST_ROLE_RE = re.compile(r":[A-Za-z][\w:.+-]*:`((?:[^`\\]|\\.)+)`")
_RST_LINK_TARGET_RE = re.compile(r"`([^`<]*?)\s*<[^<>`]+>`__?")
_RST_REF_RE = re.compile(r"`([^`]+)`__?")
_RST_INTERP_RE = re.compile(r"`([^`]+)`")
_RST_STRONG_RE = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_RST_EMPH_RE = re.compile(r"(?<![\w*\\])\*(?=[^\s*])(.+?)(?<=[^\s\\])\*(?![\w*])")
_RST_FOOTREF_RE = re.compile(r"\s?\[(?:#[\w-]*|\*|\d+)\]_")
_RST_SUBST_RE = re.compile(r"\|([\w][\w .-]*)\|_{0,2}")
_RST_ESC_SPACE_RE = re.compile(r"\\ ")
_RST_ESC_RE = re.compile(r"\\(.)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_end(lines: Sequence[str], start: int, indent: int) -> int:
    """First index >= start whose line is non-blank and indented <= indent."""
    j = start
    while j < len(lines):
        if lines[j].strip() and _indent(lines[j]) <= indent:
            break
        j += 1
    return j


def _dedent(lines: Sequence[str]) -> list[str]:
    ind = min((_indent(l) for l in lines if l.strip()), default=0)
    return [l[ind:] if l.strip() else "" for l in lines]


_RST_XREF_ROLES = frozenset({"ref", "doc", "numref", "std:ref", "std:doc"})


def _rst_role(m: re.Match) -> str:
    full = m.group(0)
    role = full[1:full.index(":`")].lower()
    t = m.group(1)
    if t.endswith(">") and "<" in t:  # :ref:`text <target>` -> text (or the target if no text)
        head = t[: t.rfind("<")].strip()
        if head:
            return head
        t = t[t.rfind("<") + 1:-1]
    tilde = t.startswith("~")
    t = t.lstrip("~!")
    if tilde:  # :meth:`~foo.Bar.baz` renders as 'baz'
        t = t.rsplit(".", 1)[-1]
    if role in _RST_XREF_ROLES:  # bare label: Sphinx shows the section title; approximate it
        t = t.rstrip("/").rsplit("/", 1)[-1].replace("-", " ").replace("_", " ")
    return t


def rst_inline(s: str) -> str:
    """Strip reST inline markup (roles, literals, links, emphasis, footnote refs, escapes)."""
    parts = re.split(r"(``.+?``)", s)  # inline literals are verbatim (no escapes, no markup)
    if len(parts) > 1:
        return "".join(p[2:-2] if k % 2 else rst_inline(p) for k, p in enumerate(parts))
    s = _RST_ROLE_RE.sub(_rst_role, s)
    s = _RST_LINK_TARGET_RE.sub(r"\1", s)
    s = _RST_REF_RE.sub(r"\1", s)
    s = _RST_INTERP_RE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if m.group(1).startswith("~") else m.group(1), s)
    s = _RST_STRONG_RE.sub(r"\1", s)
    s = _RST_EMPH_RE.sub(r"\1", s)
    s = _RST_FOOTREF_RE.sub("", s)
    s = _RST_SUBST_RE.sub(r"\1", s)
    s = _RST_ESC_SPACE_RE.sub("", s)
    s = _RST_ESC_RE.sub(r"\1", s)
    return s


def _rst_paragraphs(lines: Sequence[str]) -> list[str]:
    """Paragraphs (joined lines, inline markup still present) of a block of reST lines."""
    paras: list[str] = []
    cur: list[str] = []
    cur_indent = 0  # indent of a plain paragraph's lines
    item_base = -1  # >= 0 while the paragraph is a list item / field: continuation lines are deeper
    literal_base = -1  # >= 0 after a paragraph ending in '::': next deeper block is a literal block

    def flush() -> None:
        nonlocal cur, item_base, literal_base
        if cur:
            text = " ".join(cur)
            if text.endswith("::"):
                literal_base = item_base if item_base >= 0 else cur_indent
                text = text[:-2].rstrip() if (text == "::" or text.endswith(" ::")) else text[:-1]
            if text:
                paras.append(text)
        cur, item_base = [], -1

    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        s = line.strip()
        ind = _indent(line)
        if not s:
            flush()
            i += 1
            continue
        if literal_base >= 0:
            base, literal_base = literal_base, -1
            if ind > base:  # indented literal block: drop it
                i = _block_end(lines, i, base)
                continue
        if _RST_EXPLICIT_RE.match(s):  # directive, comment, target, footnote, substitution def
            flush()
            end = _block_end(lines, i + 1, ind)
            m = _RST_DIRECTIVE_RE.match(s)
            if m:
                name = m.group(1).lower().rsplit(":", 1)[-1]
                arg = (m.group(2) or "").strip()
                if name in _RST_KEEP_BODY:
                    body = list(lines[i + 1:end])
                    k = 0  # skip the directive's options (and extra signatures)
                    while k < len(body) and body[k].strip() and (
                            name in _RST_SIGNATURE or _RST_OPTION_RE.match(body[k].strip())):
                        k += 1
                    if name in _RST_TEXT_ARG and arg:
                        paras.append(arg)
                    elif name in _RST_VERSION_ARG and arg:
                        rest = arg.split(None, _RST_VERSION_ARG[name])
                        if len(rest) > _RST_VERSION_ARG[name]:
                            paras.append(rest[-1])
                    paras.extend(_rst_paragraphs(_dedent(body[k:])))
            i = end
            continue
        if s.startswith(("+-", "+=")) and s.endswith("+"):  # grid table
            flush()
            while i < n and lines[i].strip() and lines[i].strip()[0] in "+|":
                i += 1
            continue
        if _RST_SIMPLE_TABLE_RE.match(s):  # simple table: ends at a border followed by a blank line
            flush()
            i += 1
            while i < n:
                if _RST_SIMPLE_TABLE_RE.match(lines[i].strip()) and (i + 1 >= n or not lines[i + 1].strip()):
                    i += 1
                    break
                i += 1
            continue
        if _RST_ADORN_RE.match(s):  # section over/underline or transition
            flush()
            i += 1
            continue
        if s.startswith(">>>"):  # doctest block
            flush()
            while i < n and lines[i].strip():
                i += 1
            continue
        m = _RST_BULLET_RE.match(s) or _RST_FIELD_RE.match(s)
        if m and cur and item_base < 0 and ind == cur_indent:
            m = None  # '+ 1' or '- x' wrapped inside a running paragraph is text, not a new item
        if m:  # list item or field: starts a new paragraph, continuation lines are indented deeper
            flush()
            item_base = ind
            s = s[m.end():].strip()
            if s:
                cur.append(s)
            i += 1
            continue
        if s.startswith("| "):  # line block
            flush()
            s = s[2:].strip()
        elif cur and (ind <= item_base if item_base >= 0 else ind != cur_indent):
            flush()
        if not cur and item_base < 0:
            cur_indent = ind
        cur.append(s)
        i += 1
    flush()
    return paras


def clean_rst(text: str) -> str:
    """reStructuredText -> plain prose, one paragraph per line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(8).split("\n")
    paras = [rst_inline(p) for p in _rst_paragraphs(lines)]
    return "\n".join(finalize_paragraphs(paras))


# --------------------------------------------------------------------------------------------------
# Markdown (a few Sphinx sources are MyST / CommonMark)
# --------------------------------------------------------------------------------------------------

_MD_FENCE_RE = re.compile(r"^(```+|~~~+)")
_MD_HEADING_RE = re.compile(r"^#{1,6}\s+")
_MD_SETEXT_RE = re.compile(r"^(=+|-+)$")
_MD_BULLET_RE = re.compile(r"^([-*+]|\d+[.)])\s+")
_MD_REFDEF_RE = re.compile(r"^\[[^\]]+\]:\s*\S+")
_MD_IMAGE_RE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK_RE = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MD_REFLINK_RE = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_MD_MYST_ROLE_RE = re.compile(r"\{[\w:.-]+\}`([^`]+)`")
_MD_CODE_RE = re.compile(r"`+([^`]+?)`+")
_MD_STRONG_RE = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_MD_EMPH_RE = re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])")
_HTML_TAG_RE = re.compile(r"<[^>\n]+>")
_HTML_COMMENT_RE = re.compile(r"<!--.*?-->", re.S)


def md_inline(s: str) -> str:
    s = _MD_IMAGE_RE.sub("", s)
    s = _MD_LINK_RE.sub(r"\1", s)
    s = _MD_REFLINK_RE.sub(r"\1", s)
    s = _MD_MYST_ROLE_RE.sub(lambda m: _rst_role(m), s)
    s = _MD_CODE_RE.sub(r"\1", s)
    s = _MD_STRONG_RE.sub(r"\2", s)
    s = _MD_EMPH_RE.sub(r"\2", s)
    s = _HTML_TAG_RE.sub("", s)
    return html.unescape(s)


def clean_markdown(text: str) -> str:
    text = _HTML_COMMENT_RE.sub("", text.replace("\r\n", "\n")).expandtabs(4)
    paras: list[str] = []
    cur: list[str] = []
    in_fence: str | None = None
    prev_blank = True
    in_list = False

    def flush():
        nonlocal cur
        if cur:
            paras.append(" ".join(cur))
        cur = []

    for line in text.split("\n"):
        s = line.strip()
        if in_fence:
            if s.startswith(in_fence):
                in_fence = None
            prev_blank = False
            continue
        m = _MD_FENCE_RE.match(s)
        if m:
            flush()
            in_fence = m.group(1)
            continue
        if not s:
            flush()
            prev_blank = True
            continue
        ind = _indent(line)
        if ind >= 4 and (prev_blank or not cur) and not in_list:  # indented code block
            flush()
            prev_blank = False
            continue
        prev_blank = False
        if s.startswith("|") or _MD_REFDEF_RE.match(s) or s.startswith("<"):  # tables, refs, html
            flush()
            continue
        if _MD_SETEXT_RE.match(s) and len(s) >= 3:
            flush()
            continue
        if _MD_HEADING_RE.match(s):
            flush()
            paras.append(_MD_HEADING_RE.sub("", s).rstrip("#").strip())
            in_list = False
            continue
        bm = _MD_BULLET_RE.match(s)
        if bm:
            flush()
            s = s[bm.end():]
            in_list = True
        elif ind == 0 and not cur:
            in_list = False
        while s.startswith(">"):
            s = s[1:].lstrip()
        cur.append(s)
    flush()
    return "\n".join(finalize_paragraphs(md_inline(p) for p in paras))


# --------------------------------------------------------------------------------------------------
# HTML (stdlib html.parser)
# --------------------------------------------------------------------------------------------------

_HTML_SKIP_TAGS = frozenset("""
script style head pre table nav header footer form svg math noscript button select textarea object
iframe canvas template map
""".split())
_HTML_VOID_TAGS = frozenset("area base br col embed hr img input link meta param source track wbr".split())
_HTML_BLOCK_TAGS = frozenset("""
p div li dt dd h1 h2 h3 h4 h5 h6 br section article blockquote tr ul ol dl title hr figcaption caption
main aside address details summary body
""".split())
# class / id tokens (exact) of navigation, tables of contents, code, signatures, footers ...
_HTML_SKIP_TOKENS = frozenset("""
nav navbar navheader navfooter navigation toc contents sidebar sphinxsidebar sphinxsidebarwrapper
related footer header breadcrumb breadcrumbs headerlink toplang bottomlang page-header quickview
gtoc column2 menu search searchbox highlight programlisting synopsis cmdsynopsis funcsynopsis
refsynopsisdiv screen literallayout sig sig-object descname sig-name sig-prename linenos
listingblock literalblock docs-top-navigation-container fixed-sidebar index-nav narrow-index-nav
docs-bottom-navigation global-nav hd ft toc-backref mw-jump skip-link copyright footnotes
doc-source anchor edit-link srclink mark legacy docs-sidebar docs-narrow-top-navigation
docs-top-navigation docs-sidebar-popout docs-version-header docs-copyright
code-header test-arrow notable-traits notable since rightside out-of-band sub-nav-list skip-nav
inheritance member-signature type-signature summary-table method-summary-table inherited-list
table-tab sub-nav top-nav flex-box-header hidden mobile-topbar
""".split())


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.skip_depth = 0
        self.paras: list[str] = []
        self.cur: list[str] = []

    def _flush(self) -> None:
        if self.cur:
            self.paras.append("".join(self.cur))
            self.cur = []

    def _should_skip(self, tag: str, attrs) -> bool:
        if tag in _HTML_SKIP_TAGS:
            return True
        for k, v in attrs:
            if not v:
                continue
            if k in ("class", "id") and any(t in _HTML_SKIP_TOKENS for t in v.lower().split()):
                return True
            if k == "role" and v.lower() in ("navigation", "search", "banner", "contentinfo"):
                return True
            if k == "style" and re.search(r"display\s*:\s*none", v, re.I):
                return True
        return False

    def handle_starttag(self, tag, attrs):
        if tag in _HTML_BLOCK_TAGS:
            self._flush()
        if tag in _HTML_VOID_TAGS:
            return
        skip = self._should_skip(tag, attrs)
        self.stack.append((tag, skip))
        if skip:
            self.skip_depth += 1

    def handle_startendtag(self, tag, attrs):
        if tag in _HTML_BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag):
        if tag in _HTML_BLOCK_TAGS:
            self._flush()
        if tag in _HTML_VOID_TAGS:
            return
        for k in range(len(self.stack) - 1, -1, -1):  # pop to the matching open tag, if any
            if self.stack[k][0] == tag:
                for _, skip in self.stack[k:]:
                    if skip:
                        self.skip_depth -= 1
                del self.stack[k:]
                break

    def handle_data(self, data):
        if self.skip_depth == 0:
            self.cur.append(data)

    def close(self):
        super().close()
        self._flush()


def html_to_paragraphs(text: str) -> list[str]:
    p = _TextExtractor()
    p.feed(text)
    p.close()
    return p.paras


def clean_html(text: str) -> str:
    """HTML -> plain prose: navigation, code, tables, scripts removed; one paragraph per line."""
    paras = [p.replace("\u00b6", "") for p in html_to_paragraphs(text)]  # pilcrow permalinks
    return "\n".join(finalize_paragraphs(paras))


# --------------------------------------------------------------------------------------------------
# Perl POD
# --------------------------------------------------------------------------------------------------

_POD_MULTI_RE = re.compile(r"([A-Z])<{2,}\s+(.*?)\s+>{2,}", re.S)
_POD_SIMPLE_RE = re.compile(r"([A-Z])<([^<>]*)>")
_POD_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/"}


def _pod_code(m: re.Match) -> str:
    code, body = m.group(1), m.group(2)
    if code in "XZ":
        return ""
    if code == "E":
        if body in _POD_ENTITIES:
            return _POD_ENTITIES[body]
        if body.isdigit():
            return chr(int(body))
        if body.lower().startswith("0x"):
            return chr(int(body, 16))
        return html.unescape(f"&{body};")
    if code == "L":
        if "|" in body:
            return body.split("|", 1)[0]
        body = body.strip('"')
        if "/" in body and "://" not in body:
            page, sec = body.split("/", 1)
            sec = sec.strip('"')
            return f"{sec} in {page}" if page else sec
        return body
    return body


def pod_inline(s: str) -> str:
    s = _POD_MULTI_RE.sub(_pod_code, s)
    for _ in range(10):  # nested codes, innermost first
        t = _POD_SIMPLE_RE.sub(_pod_code, s)
        if t == s:
            break
        s = t
    return s


def clean_pod(text: str) -> str:
    """Perl POD -> prose: commands and verbatim (indented) paragraphs dropped, format codes removed."""
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    paras: list[str] = []
    skip_until_end: str | None = None
    in_pod = True
    for b in blocks:
        if not b.strip():
            continue
        first = b.lstrip("\n")
        if skip_until_end:
            if re.match(rf"=end\s+{re.escape(skip_until_end)}", first):
                skip_until_end = None
            continue
        if first.startswith("="):
            cmd, _, rest = first.partition(" ")
            cmd = cmd.split("\n")[0]
            rest = rest.strip()
            if cmd == "=cut":
                in_pod = False
            elif cmd in ("=pod",) or cmd.startswith("=head"):
                in_pod = True
            if cmd.startswith("=head") and rest:
                paras.append(rest)
            elif cmd == "=item":
                item = re.sub(r"^(\*|\d+\.?)\s*", "", rest)
                if item:
                    paras.append(item)
            elif cmd == "=begin":
                skip_until_end = rest.split()[0] if rest else ""
            continue
        if not in_pod or first[:1] in (" ", "\t"):  # code outside POD / verbatim paragraph
            continue
        paras.append(first)
    return "\n".join(finalize_paragraphs(pod_inline(p) for p in paras))


# --------------------------------------------------------------------------------------------------
# man pages (roff, man macros)
# --------------------------------------------------------------------------------------------------

_ROFF_CHARS = {"em": "\u2014", "en": "\u2013", "aq": "'", "dq": '"', "lq": "\u201c", "rq": "\u201d",
               "oq": "\u2018", "cq": "\u2019", "bu": "\u2022", "co": "\u00a9", "rg": "\u00ae",
               "tm": "\u2122", "mu": "\u00d7", "di": "\u00f7", "+-": "\u00b1", "<=": "\u2264",
               ">=": "\u2265", "!=": "\u2260", "->": "\u2192", "<-": "\u2190", "de": "\u00b0",
               "ti": "~", "ha": "^", "rs": "\\", "dg": "\u2020", "hy": "-", "mi": "-", "pl": "+",
               "eq": "=", "sl": "/", "ga": "`", "aa": "\u00b4", "at": "@", "sh": "#", "Do": "$",
               "ba": "|", "br": "|", "lB": "[", "rB": "]", "lC": "{", "rC": "}", "fo": "\u00ab",
               "fc": "\u00bb", "Fo": "\u00ab", "Fc": "\u00bb", "ss": "\u00df"}
_ROFF_ESC_RE = re.compile(
    r"\\(?:\(([^\s]{2})|\[([^\]]*)\]|\*(?:\(..|\[[^\]]*\]|.)|f(?:\(..|\[[^\]]*\]|.)|s[-+]?\d+|"
    r"[nk](?:\(..|\[[^\]]*\]|.)|[hvwlLxXoSbDuZ]'[^']*'|(.))")
_ROFF_BREAK = frozenset("PP LP P sp br TP IP HP RS RE in ad na nh hy ft fi ne bp ti ce ll ps vs TQ SY YS "
                        "OP PD UC".split())
_ROFF_FONT = frozenset("B I SM SB BR BI IB IR RB RI".split())
_ROFF_SKIP_BLOCK = {"nf": "fi", "EX": "EE", "TS": "TE", "EQ": "EN", "PS": "PE", "de": "..", "ig": ".."}


def _roff_escape(m: re.Match) -> str:
    two, named, single = m.group(1), m.group(2), m.group(3)
    if two is not None:
        return _ROFF_CHARS.get(two, "")
    if named is not None:
        if named.startswith(("u", "U")) and re.fullmatch(r"[uU][0-9A-Fa-f]{4,6}", named):
            return chr(int(named[1:], 16))
        return _ROFF_CHARS.get(named, "")
    if single is not None:
        return {"-": "-", "e": "\\", "\\": "\\", ".": ".", " ": " ", "~": " ", "0": " ", "'": "\u00b4",
                "`": "`", "(": "(", "t": " "}.get(single, "")
    if m.group(0).startswith("\\*"):  # strings: \*(lq \*(rq \*R ...
        name = m.group(0)[2:].strip("([]")
        return {"lq": "\u201c", "rq": "\u201d", "R": "\u00ae", "Tm": "\u2122"}.get(name, "")
    return ""


def _roff_args(rest: str) -> list[str]:
    args, cur, q, i = [], [], False, 0
    while i < len(rest):
        c = rest[i]
        if c == '"':
            if q and i + 1 < len(rest) and rest[i + 1] == '"':
                cur.append('"')
                i += 2
                continue
            q = not q
        elif c in " \t" and not q:
            if cur:
                args.append("".join(cur))
                cur = []
        else:
            cur.append(c)
        i += 1
    if cur:
        args.append("".join(cur))
    return args


def clean_man(text: str) -> str:
    """man(7) roff source -> prose: requests, synopsis/example/table blocks and escapes removed."""
    lines = text.replace("\r\n", "\n").split("\n")
    paras: list[str] = []
    cur: list[str] = []
    skip_end: str | None = None

    def flush():
        nonlocal cur
        if cur:
            paras.append(" ".join(cur))
        cur = []

    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        while line.endswith("\\") and not line.endswith("\\\\") and i < len(lines):  # continuation
            line = line[:-1] + lines[i]
            i += 1
        if skip_end:
            if line.strip().lstrip(".'").split()[:1] == [skip_end] or (skip_end == ".." and line.strip() == ".."):
                skip_end = None
            continue
        if line.startswith((".\\\"", "'\\\"", "\\\"")) or line.strip() in (".", ""):
            if not line.strip():
                flush()
            continue
        if line[:1] in ".'":
            parts = line[1:].strip().split(None, 1)
            if not parts:
                continue
            req, rest = parts[0], (parts[1] if len(parts) > 1 else "")
            if req in _ROFF_SKIP_BLOCK:
                flush()
                skip_end = _ROFF_SKIP_BLOCK[req]
                continue
            if req in ("SH", "SS"):
                flush()
                title = " ".join(_roff_args(rest))
                if title:
                    paras.append(title[:1] + title[1:].lower() if title.isupper() else title)
                continue
            if req in _ROFF_BREAK:
                flush()
                if req == "IP" and rest:  # .IP "tag" indent
                    tag = _roff_args(rest)[0]
                    if tag not in ("\\(bu", "\\[bu]", "*", "-", "\\-"):
                        paras.append(tag)
                continue
            if req in _ROFF_FONT:
                args = _roff_args(rest)
                if not args and i < len(lines):  # '.B' alone applies to the next line
                    continue
                # .B/.I: words in one font; .BR/.IR/...: alternating fonts, arguments run together
                cur.append(" ".join(args) if req in ("B", "I", "SM", "SB") else "".join(args))
                continue
            if req in ("UR", "MT"):
                continue
            if req in ("UE", "ME"):
                if rest and cur:
                    cur[-1] += " ".join(_roff_args(rest))
                continue
            continue  # TH, so, other requests: drop
        cur.append(line.strip())
    flush()
    return "\n".join(finalize_paragraphs(_ROFF_ESC_RE.sub(_roff_escape, p) for p in paras))


# --------------------------------------------------------------------------------------------------
# Documents, formats, splitting
# --------------------------------------------------------------------------------------------------


def doc_format(path: str) -> str | None:
    p = path[:-3] if path.endswith(".gz") else path
    if p.endswith((".rst", ".rst.txt", ".txt")):
        return "rst"
    if p.endswith((".md", ".md.txt")):
        return "md"
    if p.endswith((".html", ".htm", ".html.en", ".xhtml")):
        return "html"
    if p.endswith(".pod"):
        return "pod"
    if re.search(r"/man/man[1-9][a-z]*/[^/]+\.[1-9][a-z]*$", p):
        return "man"
    return None


CLEANERS = {"rst": clean_rst, "md": clean_markdown, "html": clean_html, "pod": clean_pod,
            "man": clean_man}


def clean_document(text: str, fmt: str) -> str:
    return CLEANERS[fmt](text)


def split_of(doc_id: str, calib_frac: float = 0.05, eval_frac: float = 0.05) -> str:
    """Deterministic document-level split from a sha256 of the document id."""
    u = int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big") / 2.0**64
    if u < eval_frac:
        return "eval"
    if u < eval_frac + calib_frac:
        return "calib"
    return "train"


def looks_english(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    ascii_frac = sum(c.isascii() for c in letters) / len(letters)
    return ascii_frac >= 0.95 and stopword_fraction(text) >= 0.12


def _read_source(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def _clean_job(job: tuple[str, str, str]) -> tuple[str, list[str]]:
    doc_id, path, fmt = job
    try:
        text = clean_document(_read_source(Path(path)), fmt)
    except Exception as e:  # a malformed file must not kill the build
        print(f"warning: failed to clean {doc_id}: {e!r}", file=sys.stderr)
        text = ""
    return doc_id, text.split("\n") if text else []


# --------------------------------------------------------------------------------------------------
# Debian packages
# --------------------------------------------------------------------------------------------------


class CorpusError(RuntimeError):
    pass


def require_tools() -> None:
    missing = [t for t in ("apt-get", "dpkg-deb") if shutil.which(t) is None]
    if missing:
        raise CorpusError(
            f"{' and '.join(missing)} not found: benchmarks/corpus.py fetches Debian documentation "
            "packages and needs a Debian/Ubuntu system (or container) with apt-get and dpkg-deb, "
            "e.g. `docker run -it debian:bookworm`. The shipped slices in quamba_edge/assets/text "
            "do not need this.")


def _run(cmd: Sequence[str], cwd: Path | None = None) -> str:
    r = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise CorpusError(f"`{shlex.join(cmd)}` failed ({r.returncode}):\n{r.stderr.strip()}")
    return r.stdout


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_deb(pkg: str, cache_dir: Path, refresh: bool = False) -> Path:
    """apt-get download PKG into cache_dir (once); returns the .deb path."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    have = sorted(cache_dir.glob(f"{pkg}_*.deb"))
    if have and not refresh:
        return have[-1]
    for old in have:
        old.unlink()
    cmd = ["apt-get", "download", "-q", pkg]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root: the _apt sandbox user cannot write here
        cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
    try:
        _run(cmd, cwd=cache_dir)
    except CorpusError as e:
        hint = ""
        if "Unable to locate" in str(e) or "has no installation candidate" in str(e):
            hint = "\n(is the package list current? run `apt-get update`; the defaults are for Debian bookworm)"
        raise CorpusError(f"could not download {pkg}: {e}{hint}") from None
    have = sorted(cache_dir.glob(f"{pkg}_*.deb"))
    if not have:
        raise CorpusError(f"apt-get download {pkg} produced no .deb in {cache_dir}")
    return have[-1]


def deb_fields(deb: Path) -> dict[str, str]:
    out = _run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Architecture", "Source"])
    fields = {}
    for line in out.splitlines():
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    return fields


def parse_copyright(text: str) -> dict:
    """Licence summary of a debian/copyright file (machine-readable DEP-5 or free-form)."""
    info: dict = {"machine_readable": text.lstrip().startswith("Format:")}
    if info["machine_readable"]:
        licences, primary = [], None
        for stanza in re.split(r"\n\s*\n", text):
            files = re.search(r"^Files:\s*(.+)$", stanza, re.M)
            lic = re.search(r"^License:\s*(.+)$", stanza, re.M)
            if files and lic:
                name = lic.group(1).strip()
                licences.append(name)
                if files.group(1).split()[0] == "*" and primary is None:
                    primary = name
        info["files_star_licence"] = primary
        info["licences"] = sorted(set(licences))
    else:
        found = []
        for key, name in [("PYTHON SOFTWARE FOUNDATION LICENSE", "PSF-2.0"),
                          ("GNU General Public License", "GPL"),
                          ("Apache License", "Apache-2.0"), ("Artistic License", "Artistic"),
                          ("Permission is hereby granted, free of charge", "MIT"),
                          ("Redistribution and use in source and binary forms", "BSD")]:
            if key.lower() in text.lower():
                found.append(name)
        info["files_star_licence"] = None
        info["licences"] = found
    return info


def _collect_files(root: Path, spec: PackageSpec) -> list[tuple[str, Path, str]]:
    docs = []
    for dirpath, _dirs, files in os.walk(root):
        for fn in files:
            full = Path(dirpath) / fn
            rel = full.relative_to(root).as_posix()
            if full.is_symlink() or not any(fnmatch.fnmatchcase(rel, pat) for pat in spec.include):
                continue
            if any(fnmatch.fnmatchcase(rel, pat) for pat in spec.exclude):
                continue
            fmt = doc_format(rel)
            if fmt:
                doc_rel = rel[:-3] if rel.endswith(".gz") else rel
                docs.append((f"{spec.name}/{doc_rel}", full, fmt))
    return sorted(docs)


# --------------------------------------------------------------------------------------------------
# Corpus assembly
# --------------------------------------------------------------------------------------------------


@dataclass
class Config:
    packages: list[str]
    calib_frac: float = 0.05
    eval_frac: float = 0.05
    min_doc_chars: int = 500
    boilerplate_min_docs: int = 10
    boilerplate_max_chars: int = 300
    dedup_min_chars: int = 80
    format_version: int = CORPUS_FORMAT_VERSION


@dataclass
class Doc:
    doc_id: str
    package: str
    paras: list[str]
    split: str = ""
    text: str = ""


def assemble(cleaned: dict[str, list[Doc]], cfg: Config) -> tuple[list[Doc], dict[str, Counter]]:
    """Boilerplate removal, paragraph + document de-duplication, length/language filters, split.

    `cleaned` maps package -> docs (any order); the packages are processed in cfg.packages order and
    the docs by id, so the first occurrence of a repeated paragraph is deterministic.
    """
    stats: dict[str, Counter] = {}
    seen_paras: set[bytes] = set()
    seen_docs: set[bytes] = set()
    kept: list[Doc] = []
    for pkg in cfg.packages:
        st = stats.setdefault(pkg, Counter())
        docs = sorted(cleaned.get(pkg, []), key=lambda d: d.doc_id)
        st["files"] = len(docs)
        df = Counter()
        for d in docs:
            df.update(set(d.paras))
        boiler = {p for p, c in df.items() if c >= cfg.boilerplate_min_docs and len(p) <= cfg.boilerplate_max_chars}
        for d in docs:
            paras = []
            for p in d.paras:
                if p in boiler:
                    st["boilerplate_paragraphs"] += 1
                    continue
                if len(p) >= cfg.dedup_min_chars:
                    h = hashlib.sha1(p.encode("utf-8")).digest()
                    if h in seen_paras:
                        st["duplicate_paragraphs"] += 1
                        continue
                    seen_paras.add(h)
                paras.append(p)
            text = "\n".join(paras)
            if len(text) < cfg.min_doc_chars:
                st["dropped_short"] += 1
                continue
            if not looks_english(text):
                st["dropped_not_english"] += 1
                continue
            h = hashlib.sha1(text.encode("utf-8")).digest()
            if h in seen_docs:
                st["dropped_duplicate_doc"] += 1
                continue
            seen_docs.add(h)
            d.text, d.paras = text, paras
            d.split = split_of(d.doc_id, cfg.calib_frac, cfg.eval_frac)
            st[f"docs_{d.split}"] += 1
            st[f"bytes_{d.split}"] += len(text.encode("utf-8"))
            kept.append(d)
    return kept, stats


def write_split_text(docs: Iterable[Doc], path: Path) -> tuple[int, int]:
    """Documents separated by one blank line; paragraphs one per line. Returns (docs, bytes)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = size = 0
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for d in docs:
            if n:
                f.write("\n")
                size += 1
            chunk = d.text + "\n"
            f.write(chunk)
            size += len(chunk.encode("utf-8"))
            n += 1
    os.replace(tmp, path)
    return n, size


def read_documents(path: Path) -> list[str]:
    """Inverse of write_split_text: the documents of a split file."""
    text = Path(path).read_text(encoding="utf-8")
    return [d for d in text.split("\n\n") if d.strip()]


def write_shipped(docs: list[Doc], assets_dir: Path, pkg_info: dict, command: str) -> dict:
    """Write quamba_edge/assets/text/{calib,eval}.txt (<= 1 MB each) + SOURCE.md."""
    assets_dir.mkdir(parents=True, exist_ok=True)
    shippable = {n for n, s in PACKAGES.items() if s.shippable}
    result = {}
    for split in ("calib", "eval"):
        chosen, size = [], 0
        for d in sorted((d for d in docs if d.split == split and d.package in shippable),
                        key=lambda d: d.doc_id):
            add = len(d.text.encode("utf-8")) + 1 + (1 if chosen else 0)
            if size + add > SHIP_MAX_BYTES:
                continue
            chosen.append(d)
            size += add
        n, nbytes = write_split_text(chosen, assets_dir / f"{split}.txt")
        assert nbytes <= SHIP_MAX_BYTES
        result[split] = {"docs": n, "bytes": nbytes, "sha256": sha256_file(assets_dir / f"{split}.txt"),
                         "doc_ids": [d.doc_id for d in chosen]}
    lines = ["# Shipped text slices: source and licence", "",
             "`calib.txt` (quantization calibration) and `eval.txt` (perplexity / smoke evaluation) are",
             "plain-text prose extracted from the **Python 3.11 documentation** as packaged by Debian.",
             "Documents are separated by a blank line; each line is one paragraph.", "",
             "| | |", "|---|---|"]
    for pkg in sorted({d.package for s in ("calib", "eval") for d in docs
                       if d.split == s and d.package in shippable}):
        info = pkg_info[pkg]
        lines += [f"| Debian package | `{pkg}` {info['version']} (source package `{info['source']}`) |",
                  f"| .deb sha256 | `{info['deb_sha256']}` |",
                  f"| Licence | {PACKAGES[pkg].licence} (Python Software Foundation License Version 2; "
                  f"the Python documentation is (c) Python Software Foundation) |",
                  f"| Copyright file | `/usr/share/doc/{pkg}/copyright` in the .deb (sha256 "
                  f"`{info['copyright_sha256']}`) |"]
    for split in ("calib", "eval"):
        r = result[split]
        lines.append(f"| `{split}.txt` | {r['docs']} documents, {r['bytes']:,} bytes, sha256 `{r['sha256']}` |")
    lines += ["", "Only documents that fall in the calibration / evaluation splits of the full corpus",
              "(deterministic sha256 hash of the document path) are used, so none of this text is in the",
              "training split of the reference models.", "",
              "Produced by (from the repository root, Debian bookworm with `apt-get update` done):", "",
              "```", command, "```", "",
              "Source documents (paths inside the .deb, reST sources of the HTML docs):", ""]
    for split in ("calib", "eval"):
        lines.append(f"- {split}: " + ", ".join(
            "`" + i.split("/_sources/", 1)[-1].removesuffix(".rst.txt") + "`" for i in result[split]["doc_ids"]))
    (assets_dir / "SOURCE.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {s: {k: v for k, v in r.items() if k != "doc_ids"} | {"documents": len(r["doc_ids"])}
            for s, r in result.items()}


def _fingerprint(cfg: Config, debs: dict[str, str]) -> str:
    blob = json.dumps({"config": asdict(cfg), "debs": debs,
                       "script": sha256_file(Path(__file__))}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def build(args: argparse.Namespace) -> int:
    require_tools()
    unknown = [p for p in args.packages if p not in PACKAGES]
    if unknown:
        raise CorpusError(f"unknown package(s) {unknown}; known: {', '.join(PACKAGES)}")
    cfg = Config(packages=list(args.packages), calib_frac=args.calib_frac, eval_frac=args.eval_frac,
                 min_doc_chars=args.min_doc_chars)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    # 1. fetch
    debs: dict[str, Path] = {}
    bar = tqdm(cfg.packages, desc="apt-get download", unit="pkg")
    for pkg in bar:
        try:
            debs[pkg] = fetch_deb(pkg, args.cache_dir, refresh=args.refresh)
        except CorpusError as e:
            if args.strict or PACKAGES[pkg].shippable:
                raise
            print(f"warning: skipping {pkg}: {e}", file=sys.stderr)
    cfg.packages = [p for p in cfg.packages if p in debs]
    deb_sha = {p: sha256_file(d) for p, d in debs.items()}
    fp = _fingerprint(cfg, deb_sha)
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and not args.force:
        try:
            old = json.loads(manifest_path.read_text())
            if old.get("fingerprint") == fp and all((out / f"{s}.txt").exists() for s in SPLITS) and \
                    (args.no_assets or all((args.assets_dir / f).exists() for f in ("calib.txt", "eval.txt", "SOURCE.md"))):
                print(f"corpus in {out} is up to date (fingerprint {fp[:12]}); use --force to rebuild")
                return 0
        except (OSError, ValueError):
            pass

    # 2. extract + clean
    pkg_info: dict[str, dict] = {}
    cleaned: dict[str, list[Doc]] = {}
    (out / "licenses").mkdir(exist_ok=True)
    import multiprocessing as mp
    workers = args.workers or max(1, min(16, (os.cpu_count() or 2)))
    with tempfile.TemporaryDirectory(prefix="quamba-corpus-") as tmp:
        jobs: list[tuple[str, str, str]] = []
        owner: dict[str, str] = {}
        for pkg in tqdm(cfg.packages, desc="dpkg-deb -x", unit="pkg"):
            root = Path(tmp) / pkg
            _run(["dpkg-deb", "-x", str(debs[pkg]), str(root)])
            fields = deb_fields(debs[pkg])
            cp = root / "usr/share/doc" / pkg / "copyright"
            src = PACKAGES[pkg].copyright_from
            if cp.is_file():
                cp_text = cp.read_text(encoding="utf-8", errors="replace")
            elif src and (out / "licenses" / f"{src}.copyright").is_file() and src in pkg_info:
                cp_text = (out / "licenses" / f"{src}.copyright").read_text(encoding="utf-8")
            else:  # doc dir may be a symlink to another package's
                raise CorpusError(f"{pkg}: no /usr/share/doc/{pkg}/copyright inside the .deb"
                                  + (f" and {src} (which holds it) is not selected before it" if src else ""))
            (out / "licenses" / f"{pkg}.copyright").write_text(cp_text, encoding="utf-8")
            pkg_info[pkg] = {
                "version": fields.get("version"), "architecture": fields.get("architecture"),
                "source": (fields.get("source") or pkg).split()[0], "deb": debs[pkg].name,
                "deb_sha256": deb_sha[pkg], "deb_bytes": debs[pkg].stat().st_size,
                "licence": PACKAGES[pkg].licence, "shippable": PACKAGES[pkg].shippable,
                "copyright_sha256": hashlib.sha256(cp_text.encode("utf-8")).hexdigest(),
                "copyright": parse_copyright(cp_text), "include": list(PACKAGES[pkg].include),
                "exclude": list(PACKAGES[pkg].exclude), "note": PACKAGES[pkg].note,
                "copyright_from": src or None,
            }
            for doc_id, path, fmt in _collect_files(root, PACKAGES[pkg]):
                jobs.append((doc_id, str(path), fmt))
                owner[doc_id] = pkg
        if not jobs:
            raise CorpusError("no documents found in the selected packages")
        chunks = max(1, len(jobs) // (workers * 16))
        with mp.get_context("fork" if sys.platform != "win32" else "spawn").Pool(workers) as pool:
            for doc_id, paras in tqdm(pool.imap_unordered(_clean_job, jobs, chunksize=chunks),
                                      total=len(jobs), desc="clean", unit="doc"):
                pkg = owner[doc_id]
                cleaned.setdefault(pkg, []).append(Doc(doc_id, pkg, paras))

    # 3. assemble + split
    docs, stats = assemble(cleaned, cfg)
    split_stats = {}
    for split in SPLITS:
        n, size = write_split_text((d for d in docs if d.split == split), out / f"{split}.txt")
        split_stats[split] = {"docs": n, "bytes": size, "sha256": sha256_file(out / f"{split}.txt")}
    tmp_jsonl = out / "documents.jsonl.tmp"
    with open(tmp_jsonl, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d.doc_id, "package": d.package, "split": d.split,
                                "chars": len(d.text),
                                "sha256": hashlib.sha256(d.text.encode("utf-8")).hexdigest()}) + "\n")
    os.replace(tmp_jsonl, out / "documents.jsonl")
    for pkg in cfg.packages:
        pkg_info[pkg]["stats"] = dict(sorted(stats.get(pkg, Counter()).items()))

    command = "python benchmarks/corpus.py " + " ".join(shlex.quote(a) for a in args.argv)
    shipped = None
    if not args.no_assets:
        shipped = write_shipped(docs, args.assets_dir, pkg_info, command.strip())
    manifest = {
        "name": "quamba-edge reference corpus",
        "description": "English prose from Debian documentation packages (bookworm), cleaned to plain "
                       "text; document-level deterministic split.",
        "fingerprint": fp, "format_version": CORPUS_FORMAT_VERSION, "command": command.strip(),
        "config": asdict(cfg), "splits": split_stats, "packages": pkg_info,
        "layout": "one document per block; paragraphs on single lines; documents separated by one blank line",
        "split_rule": "u = int(sha256(doc_id)[:8 bytes]) / 2**64; eval if u < eval_frac, calib if "
                      "u < eval_frac + calib_frac, else train; doc_id = '<package>/<path in .deb>'",
        "shipped_assets": shipped,
    }
    tmp_manifest = out / "manifest.json.tmp"
    tmp_manifest.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp_manifest, manifest_path)

    print(f"\ncorpus written to {out}")
    for split in SPLITS:
        s = split_stats[split]
        print(f"  {split:5s}: {s['docs']:6d} docs  {s['bytes'] / 1e6:8.2f} MB")
    for pkg in cfg.packages:
        st = stats.get(pkg, Counter())
        tot = sum(st[f"bytes_{s}"] for s in SPLITS)
        print(f"  {pkg:24s} {pkg_info[pkg]['version']:28s} {tot / 1e6:7.2f} MB  "
              f"({sum(st[f'docs_{s}'] for s in SPLITS)} docs of {st['files']} files)")
    if shipped:
        print(f"shipped slices in {args.assets_dir}: " +
              ", ".join(f"{s} {v['bytes']:,} B / {v['docs']} docs" for s, v in shipped.items()))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks/data/corpus",
                    help="output directory (default: benchmarks/data/corpus)")
    ap.add_argument("--packages", nargs="+", default=list(DEFAULT_PACKAGES), metavar="PKG",
                    help="Debian packages to use, in priority order (default: all known; see --list-packages)")
    ap.add_argument("--cache-dir", type=Path, default=REPO_ROOT / "benchmarks/data/debs",
                    help="where downloaded .debs are kept (default: benchmarks/data/debs)")
    ap.add_argument("--assets-dir", type=Path, default=REPO_ROOT / "quamba_edge/assets/text",
                    help="where the shipped calib/eval slices go (default: quamba_edge/assets/text)")
    ap.add_argument("--no-assets", action="store_true", help="do not write the shipped slices")
    ap.add_argument("--calib-frac", type=float, default=0.05)
    ap.add_argument("--eval-frac", type=float, default=0.05)
    ap.add_argument("--min-doc-chars", type=int, default=500, help="drop documents shorter than this")
    ap.add_argument("--workers", type=int, default=0, help="cleaning processes (default: CPU count, max 16)")
    ap.add_argument("--refresh", action="store_true", help="re-download the .debs")
    ap.add_argument("--force", action="store_true", help="rebuild even if the outputs are up to date")
    ap.add_argument("--strict", action="store_true", help="fail if any package cannot be downloaded")
    ap.add_argument("--list-packages", action="store_true", help="print the known packages and exit")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_packages:
        for p in PACKAGES.values():
            print(f"{p.name:24s} {p.licence:32s} {'(shippable) ' if p.shippable else ''}{p.note}")
        return 0
    try:
        return build(args)
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
