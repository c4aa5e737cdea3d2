"""What text the runtime speaks, and how it is cleaned before eSpeak NG sees it.

One function, :func:`prepare_text`, used by every way in (``Session.say``, ``mf demo --text``, ``mf serve``'s
``say``), so the rules are the same everywhere. Text is either refused with an error that names the offending
character by its code point (e.g. U+0000 (NUL)) and its position in the text as given, or normalised as documented here — never cut
short in silence (eSpeak NG reads a C string: a NUL would end the text there).

Refused:
- anything that is not a ``str``; text that is empty or only whitespace after cleaning;
- unpaired surrogates (U+D800–U+DFFF: the text was decoded wrongly, it is not valid Unicode);
- control characters (U+0000–U+001F, U+007F–U+009F) other than tab, line feed, vertical tab, form feed and
  carriage return;
- private-use and unassigned code points (no pronunciation);
- letters of scripts other than Latin: the bundled voices are English, and eSpeak NG would read each such
  letter by name ("Hebrew letter shin …"), which no character should say;
- a combining mark that follows no Latin letter;
- more than ``MAX_TEXT_CHARS`` characters.

Normalised:
- Unicode NFC (a letter followed by a combining accent becomes the accented letter);
- every whitespace character (tabs, line breaks, no-break and other Unicode spaces, U+2028/U+2029) becomes a
  plain space;
- format characters are removed: right-to-left and left-to-right marks and embeddings, zero-width spaces and
  joiners, the byte-order mark, soft hyphens. They change how text is drawn, not how it sounds.

Symbols, punctuation and digits pass through; eSpeak NG speaks symbols by name (``€`` → "euro",
``😀`` → "grinning face") and numbers as words.
"""
from __future__ import annotations

import unicodedata

#: Longest text accepted in one call; longer text should be split into sentences.
MAX_TEXT_CHARS = 2_000

_WHITESPACE_CONTROLS = "\t\n\v\f\r"


_CONTROL_NAMES = {0x00: "NUL", 0x07: "BELL", 0x08: "BACKSPACE", 0x1B: "ESCAPE", 0x7F: "DELETE"}


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, _CONTROL_NAMES.get(ord(ch), ""))
    return f"U+{ord(ch):04X}" + (f" ({name})" if name else "")


def _script(name: str) -> str:
    """The script word(s) of a letter's Unicode name: 'HEBREW LETTER SHIN' → 'Hebrew'."""
    words = name.split()
    for i, w in enumerate(words):
        if w in ("LETTER", "CAPITAL", "SMALL", "SYLLABLE", "IDEOGRAPH", "DIGRAPH", "LIGATURE") or "-" in w:
            return " ".join(words[:i]).title() or name.title()
    return words[0].title() if words else "unknown"


def _refusal(text: str, i: int, previous_letter_latin: bool) -> str | None:
    """Why character ``i`` of ``text`` cannot be spoken, or None if it can."""
    ch = text[i]
    cat = unicodedata.category(ch)
    where = f"{_describe(ch)} at position {i}"
    if cat == "Cs":
        return f"text has an unpaired surrogate {where}: it is not valid Unicode (decode the bytes as UTF-8)"
    if cat == "Cc" and ch not in _WHITESPACE_CONTROLS:
        return f"text contains the control character {where}: remove it"
    if cat == "Co":
        return f"text contains the private-use character {where}, which has no pronunciation: remove it"
    if cat == "Cn":
        return f"text contains the unassigned code point {where}, which has no pronunciation: remove it"
    if cat.startswith("L") and ord(ch) >= 128:
        name = unicodedata.name(ch, "")
        if "LATIN" not in name:
            return (f"text contains the {_script(name)} letter {where}: the voices speak English and cannot pronounce "
                    "it; write the text in Latin letters")
    if cat.startswith("M") and not previous_letter_latin:
        return f"text has the combining mark {where} with no Latin letter before it: remove it"
    return None


def prepare_text(text: object) -> str:
    """Check ``text`` and return it normalised for eSpeak NG (see the module docstring for the rules).

    Raises ValueError naming the first offending character and its position in ``text``.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"text is {len(text)} characters, more than the {MAX_TEXT_CHARS} allowed in one call: "
                         "split it into sentences")
    latin = False  # whether the last letter-or-mark run started with a Latin letter
    for i, ch in enumerate(text):
        reason = _refusal(text, i, latin)
        if reason is not None:
            raise ValueError(reason)
        cat = unicodedata.category(ch)
        if cat.startswith("L"):
            latin = True  # a non-Latin letter was refused above
        elif not cat.startswith("M"):
            latin = False
    out = []
    for ch in unicodedata.normalize("NFC", text):
        if ch.isspace() or unicodedata.category(ch) in ("Zl", "Zp"):
            out.append(" ")
        elif unicodedata.category(ch) != "Cf":
            out.append(ch)
    cleaned = "".join(out)
    if not cleaned.strip():
        raise ValueError("text to speak is empty: pass at least one word")
    return cleaned
