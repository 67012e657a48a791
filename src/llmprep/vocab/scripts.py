"""Which new pieces a merge keeps: the script rule.

A vocabulary trained on real Chinese text also learns ASCII pieces (fortunes-zh mixes in English
words, URLs, code). Appended to a base tokenizer with a high merge priority, those pieces change
how English is tokenized. Keeping only pieces of the target script leaves every other text
tokenized exactly as before.
"""

from __future__ import annotations

import re
from typing import Callable

SPACE = "▁"
# CJK Unified Ideographs and extensions A-G, compatibility ideographs, and 〇.
_HAN = (r"\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df"
        r"\U0002a700-\U0002ebef\U00030000-\U0003134f")
_HAN_PIECE = re.compile(rf"^{SPACE}?[{_HAN}]+$")
# CJK symbols and punctuation (、。《》「」), full-width forms (，：？！（）).
_CJK_PUNCT = r"\u3000-\u303f\uff00-\uffef"
# Punctuation Chinese text shares with English typography: allowed only next to a CJK character.
_SHARED_PUNCT = "“”‘’…—·"
_CJK_PIECE = re.compile(rf"^{SPACE}?[{_HAN}{_CJK_PUNCT}{_SHARED_PUNCT}]+$")
_CJK_CHAR = re.compile(rf"[{_HAN}{_CJK_PUNCT}]")
_ASCII = re.compile(r"[\x00-\x7f]")

KEEP_SCRIPTS = ("cjk", "han", "no-ascii", "all")


def is_han_piece(piece: str) -> bool:
    """Han characters only, with an optional leading word marker.

    Example: "中国" -> True, "▁中国" -> True, "中国。" -> False, "ok" -> False
    """
    return bool(_HAN_PIECE.match(piece))


def is_cjk_piece(piece: str) -> bool:
    """Han characters and CJK punctuation, with at least one character no English text uses.

    Example: "中国。" -> True, "。”" -> True, "▁“" -> False (English prose has curly quotes)
    """
    return bool(_CJK_PIECE.match(piece) and _CJK_CHAR.search(piece))


def has_no_ascii(piece: str) -> bool:
    """No ASCII character (the word marker ▁ is not ASCII) and not only white space.

    Example: "中国。" -> True, "~/." -> False, "⁴" -> True
    """
    return not _ASCII.search(piece) and bool(piece.replace(SPACE, " ").strip())


def keep_rule(name: str) -> Callable[[str], bool]:
    """The predicate for --keep-script. Example: keep_rule("han")("你好") -> True"""
    rules = {"cjk": is_cjk_piece, "han": is_han_piece, "no-ascii": has_no_ascii, "all": lambda piece: True}
    if name not in rules:
        from llmprep.errors import ConfigError
        raise ConfigError(f"--keep-script {name!r}: expected one of {', '.join(KEEP_SCRIPTS)}")
    return rules[name]
