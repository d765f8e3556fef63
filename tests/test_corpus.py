"""CPU tests of the corpus cleaners, the document split and the shipped tokenizer / text assets.

No apt, no network: the cleaners run on inline samples; the tokenizer is the one shipped in
quamba_edge/assets/tokenizer, loaded with the `tokenizers` library directly.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_DIR = ROOT / "quamba_edge" / "assets" / "tokenizer"
TEXT_DIR = ROOT / "quamba_edge" / "assets" / "text"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


corpus = _load("quamba_benchmarks_corpus", ROOT / "benchmarks" / "corpus.py")


# ------------------------------------------------------------------------------------------ reST

RST = r"""
.. _built-in-funcs:

.. XXX a comment that must vanish

Built-in Functions
==================

The Python interpreter has a number of *functions* and **types** built into it
that are always available. See :func:`open` and :ref:`the tutorial <tut-files>`.

+------------+------------+
| GRIDCELL   | TABLECELL  |
+============+============+
| abs        | all        |
+------------+------------+

=========  ==========
SIMPLECOL  OTHERCOL
=========  ==========
row1       row1value
=========  ==========

.. function:: abs(x)
              abs(x, y)

   Return the absolute value of a number, see :meth:`~object.__abs__`.

   .. versionchanged:: 3.8 The argument may now be positional only.

Equivalent to::

      def all(iterable):
          return SECRETCODE

>>> print("DOCTESTCODE")
DOCTESTCODE

.. code-block:: python

   import CODEBLOCK

.. note::

   Notes are prose and are kept.

* A bullet item that
  continues on a second line.
- Another bullet with ``literal\x`` text.

A paragraph that mentions a footnote [#]_ and a `link <https://example.org>`_ here.
"""


def test_clean_rst_removes_markup_keeps_prose():
    out = corpus.clean_rst(RST)
    lines = out.split("\n")
    assert "Built-in Functions" in lines
    assert ("The Python interpreter has a number of functions and types built into it that are always "
            "available. See open and the tutorial.") in lines
    assert "Return the absolute value of a number, see __abs__." in lines
    assert "The argument may now be positional only." in lines
    assert "Equivalent to:" in lines
    assert "Notes are prose and are kept." in lines
    assert "A bullet item that continues on a second line." in lines
    assert "Another bullet with literal\\x text." in lines
    assert "A paragraph that mentions a footnote and a link here." in lines
    for gone in ("SECRETCODE", "DOCTESTCODE", "CODEBLOCK", "GRIDCELL", "SIMPLECOL", "row1value",
                 "XXX", "built-in-funcs", "abs(x", "==", "::", ":func:", "``", "`", "https://"):
        assert gone not in out, gone


# ------------------------------------------------------------------------------------------ HTML

HTML = """<!DOCTYPE html><html><head><title>TITLETEXT</title>
<style>.x { color: red }</style><script>var SCRIPTTEXT = 1;</script></head>
<body>
<div class="sphinxsidebar" role="navigation"><ul><li>NAVLINK</li></ul></div>
<div class="body" role="main">
<h1>Making queries<a class="headerlink" href="#q">&para;</a></h1>
<p>Once you&#8217;ve created your <em>data models</em>, Django gives you a
   database&nbsp;API &amp; more.</p>
<div class="highlight"><pre>Entry.objects.filter(PRECODE=1)</pre></div>
<table><tr><td>TABLECELL</td></tr></table>
<ul><li>First item of a list.</li><li>Second item, with <code>inline_code()</code> kept.</li></ul>
<p>Caf&eacute; na&iuml;ve &mdash; non-ASCII survives.</p>
</div>
<div class="footer">FOOTERTEXT</div>
</body></html>"""


def test_clean_html_removes_markup_keeps_prose():
    out = corpus.clean_html(HTML)
    lines = out.split("\n")
    assert lines[0] == "Making queries"
    assert "Once you\u2019ve created your data models, Django gives you a database API & more." in lines
    assert "First item of a list." in lines
    assert "Second item, with inline_code() kept." in lines
    assert "Caf\u00e9 na\u00efve \u2014 non-ASCII survives." in lines
    for gone in ("TITLETEXT", "SCRIPTTEXT", "color", "NAVLINK", "PRECODE", "TABLECELL", "FOOTERTEXT",
                 "\u00b6", "<", ">"):
        assert gone not in out, gone


# ------------------------------------------------------------------------------------------ other formats

def test_clean_markdown():
    md = ("# Title\n\nSome *emphasis* and a [link](https://x.org) with `code`.\n\n"
          "```python\nFENCED = 1\n```\n\n| a | b |\n|---|---|\n| TABLE | x |\n\n- item one\n")
    out = corpus.clean_markdown(md)
    assert out.split("\n") == ["Title", "Some emphasis and a link with code.", "item one"]


def test_clean_pod():
    pod = ("=head1 NAME\n\nperlsub - Perl subroutines\n\n=head1 DESCRIPTION\n\n"
           "Like many languages, Perl provides B<user-defined> subroutines via C<< sub >> and L<perlfunc/do>.\n\n"
           "    my $VERBATIM = 1;\n\n=begin html\n\n<p>HTMLBLOCK</p>\n\n=end html\n\n=cut\n\nsub CODE { }\n")
    out = corpus.clean_pod(pod).split("\n")
    assert out == ["NAME", "perlsub - Perl subroutines", "DESCRIPTION",
                   "Like many languages, Perl provides user-defined subroutines via sub and do in perlfunc."]


def test_clean_man():
    man = ('.\\" comment COMMENTTEXT\n.TH OPEN 2 2023-02-05 "Linux man-pages"\n.SH NAME\n'
           "open \\- open a file\n.SH SYNOPSIS\n.nf\n.BI \"int open(const char *\" SYNOPSISCODE );\n.fi\n"
           ".SH DESCRIPTION\nThe\n.BR open ()\nsystem call opens the file \\fIpathname\\fP \\(em see\n"
           ".BR fcntl (2).\n.TS\nTABLECELL\n.TE\n")
    out = corpus.clean_man(man).split("\n")
    assert out == ["Name", "open - open a file", "Synopsis", "Description",
                   "The open() system call opens the file pathname \u2014 see fcntl(2)."]


def test_prose_filter_and_normalisation():
    assert corpus.normalize_ws("  a\u00a0b\t\n c\u200b ") == "a b c"
    assert corpus.is_prose("This is a perfectly ordinary English sentence about files.")
    assert not corpus.is_prose("{ } ( ) [ ] 0x1f 0x20 == != ;;")
    assert corpus.looks_english("The cat sat on the mat and it was happy with the result of the day.")
    assert not corpus.looks_english("Die Katze sa\u00df auf der Matte und war gl\u00fccklich \u00fcber den Tag.")


# ------------------------------------------------------------------------------------------ split

def test_split_is_deterministic_and_disjoint():
    ids = [f"pkg{i % 7}/usr/share/doc/x/{i}.rst.txt" for i in range(5000)]
    a = {i: corpus.split_of(i, 0.05, 0.05) for i in ids}
    b = {i: corpus.split_of(i, 0.05, 0.05) for i in reversed(ids)}
    assert a == b  # pure function of the id: order and repetition do not matter
    groups = {s: {i for i, v in a.items() if v == s} for s in corpus.SPLITS}
    assert set(a.values()) == set(corpus.SPLITS)
    assert not (groups["train"] & groups["calib"]) and not (groups["train"] & groups["eval"]) \
        and not (groups["calib"] & groups["eval"])
    assert sum(len(g) for g in groups.values()) == len(ids)
    for s, frac in (("calib", 0.05), ("eval", 0.05), ("train", 0.90)):
        assert abs(len(groups[s]) / len(ids) - frac) < 0.02, s
    # pinned values: the rule (sha256 of the id) must not drift, or the shipped slices would leak
    got = {i: corpus.split_of(f"doc{i}") for i in (0, 16, 25, 26, 38)}
    assert got == {0: "train", 16: "calib", 25: "calib", 26: "calib", 38: "eval"}


def test_assemble_dedups_across_splits():
    long_par = "This paragraph is long enough to be de-duplicated across the corpus, wherever it appears."
    docs = {"p": [corpus.Doc(f"p/doc{i}", "p", [f"Unique sentence number {i} about the topic at hand, "
                                                 f"with enough words to count as prose and be kept.", long_par])
                  for i in range(40)]}
    cfg = corpus.Config(packages=["p"], min_doc_chars=50, boilerplate_min_docs=100)
    kept, stats = corpus.assemble(docs, cfg)
    assert sum(long_par in d.text for d in kept) == 1
    assert stats["p"]["duplicate_paragraphs"] == 39
    assert all(d.split == corpus.split_of(d.doc_id, cfg.calib_frac, cfg.eval_frac) for d in kept)


# ------------------------------------------------------------------------------------------ shipped assets

@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer

    path = TOKENIZER_DIR / "tokenizer.json"
    assert path.is_file(), "run benchmarks/train_tokenizer.py to create the shipped tokenizer"
    return Tokenizer.from_file(str(path))


def test_tokenizer_vocab_and_eos(tokenizer):
    assert tokenizer.get_vocab_size() == 8192
    assert tokenizer.token_to_id("<|endoftext|>") == 0
    assert tokenizer.id_to_token(0) == "<|endoftext|>"
    cfg = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text())
    special = json.loads((TOKENIZER_DIR / "special_tokens_map.json").read_text())
    for d in (cfg, special):
        assert d["eos_token"] == d["bos_token"] == d["pad_token"] == "<|endoftext|>"
    # eos is atomic, not split into bytes
    assert tokenizer.encode("a<|endoftext|>b").ids.count(0) == 1


@pytest.mark.parametrize("text", [
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, trailing spaces  \n\ttabs\tand\r\nCRLF newlines\n",
    "def f(x):\n    return x ** 2  # code-ish text {}[]<>|\\~`",
    "Grüße aus Köln, naïve café, Ελληνικά, Русский, 日本語のテキスト, 한국어, emoji 🙂🚀, math ∑∫√",
    "\x00\x01\x7f control bytes and U+FFFD \ufffd and zero-width \u200b",
    "",
])
def test_tokenizer_round_trip(tokenizer, text):
    ids = tokenizer.encode(text).ids
    assert all(0 <= i < 8192 for i in ids)
    assert tokenizer.decode(ids, skip_special_tokens=False) == text


def test_tokenizer_compresses_english(tokenizer):
    text = ("The return value of open() is a file descriptor, a small, nonnegative integer that is used "
            "in subsequent system calls to refer to the open file.")
    assert len(tokenizer.encode(text).ids) < len(text.encode()) / 3


def test_shipped_text_slices():
    for name in ("calib.txt", "eval.txt"):
        path = TEXT_DIR / name
        assert path.is_file()
        size = path.stat().st_size
        assert 10_000 < size <= 1_000_000, (name, size)
        text = path.read_text(encoding="utf-8")
        assert "\n\n" in text
        for markup in (":func:`", ":meth:`", "``", "\n.. ", "<p>", "&amp;"):
            assert markup not in text, (name, markup)
    source = (TEXT_DIR / "SOURCE.md").read_text()
    assert "python3.11-doc" in source and "PSF" in source and "benchmarks/corpus.py" in source
    calib = set((TEXT_DIR / "calib.txt").read_text(encoding="utf-8").split("\n\n"))
    evals = set((TEXT_DIR / "eval.txt").read_text(encoding="utf-8").split("\n\n"))
    assert not (calib & evals)
