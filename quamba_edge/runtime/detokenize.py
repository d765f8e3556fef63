"""Incremental detokenization for streaming (no torch).

A byte-level BPE token can end in the middle of a multi-byte UTF-8 character (the bundled tokenizer
splits "日" into three tokens), so decoding token by token would print replacement characters. The
decoder keeps two offsets into the token list: text is decoded from ``prefix`` (a few tokens of
context, so tokenizers that treat the first token specially decode consistently) and only the part
past the already-emitted ``read`` offset is new; while that part ends in U+FFFD (an incomplete
character) nothing is emitted and the tokens wait for the rest of the character. :meth:`flush` emits
whatever is left at the end (an incomplete character then really is invalid and prints as U+FFFD,
as a full decode would).
"""

from __future__ import annotations

from typing import Any

__all__ = ["IncrementalDecoder"]

_REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """``push(token_id) -> new text`` (possibly ""); ``"".join(pieces) + flush()`` equals
    ``tokenizer.decode(all_ids, skip_special_tokens)`` for text made of complete characters."""

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True) -> None:
        self._tok = tokenizer
        self._skip = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0   # start of the context window
        self._read = 0     # tokens before this were emitted
        self.text = ""     # everything emitted so far

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=self._skip) if ids else ""

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        prefix_text = self._decode(self.ids[self._prefix:self._read])
        full = self._decode(self.ids[self._prefix:])
        if len(full) > len(prefix_text) and not full.endswith(_REPLACEMENT) and full.startswith(prefix_text):
            piece = full[len(prefix_text):]
            self._prefix, self._read = self._read, len(self.ids)
            self.text += piece
            return piece
        return ""

    def flush(self) -> str:
        """Text of the tokens not emitted yet (at the end of generation)."""
        if self._read >= len(self.ids):
            return ""
        prefix_text = self._decode(self.ids[self._prefix:self._read])
        full = self._decode(self.ids[self._prefix:])
        piece = full[len(prefix_text):] if full.startswith(prefix_text) else self._decode(self.ids[self._read:])
        self._prefix = self._read = len(self.ids)
        self.text += piece
        return piece
