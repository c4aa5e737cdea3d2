"""What text is spoken: refusals name the character and its position; normalisation is documented and stable."""
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfruntime.data.speech import synthesize
from mfruntime.data.spoken_text import MAX_TEXT_CHARS, prepare_text


@pytest.mark.parametrize("text, where", [
    ("Hello\x00world", "U+0000 (NUL) at position 5"),
    ("\x00Hello world", "U+0000 (NUL) at position 0"),
    ("Hi \x1b[31m", "U+001B (ESCAPE) at position 3"),
    ("bad \ud800 half", "surrogate U+D800 at position 4"),
    ("shalom שלום", "Hebrew letter U+05E9 (HEBREW LETTER SHIN) at position 7"),
    ("Привет", "Cyrillic"),
    ("你好", "U+4F60"),
    ("a\ue000b", "private-use character U+E000 at position 1"),
    ("\u0301abc", "combining mark U+0301 (COMBINING ACUTE ACCENT) at position 0"),
    ("x\u0378y", "unassigned code point U+0378 at position 1"),
])
def test_unspeakable_text_names_the_character_and_position(text, where):
    with pytest.raises(ValueError, match=re.escape(where)):
        prepare_text(text)


def test_documented_normalisation():
    assert prepare_text("Line one\nline\ttwo\r\n") == "Line one line two  "
    assert prepare_text("cafe\u0301") == "café"  # NFC
    assert prepare_text("Hello\u200f wo\u200brld\ufeff\u00ad") == "Hello world"  # format characters removed
    assert prepare_text("a\u00a0b\u2028c") == "a b c"  # Unicode spaces and separators → space
    assert prepare_text("It costs 5 € 😀") == "It costs 5 € 😀"  # symbols pass (spoken by name)
    for bad in ("", " \n\t", "\u200f\u200e", 7, None, b"bytes"):
        with pytest.raises(ValueError, match="empty|must be a string"):
            prepare_text(bad)
    with pytest.raises(ValueError, match="split it into sentences"):
        prepare_text("x" * (MAX_TEXT_CHARS + 1))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec=None), max_size=60))
def test_any_unicode_is_refused_clearly_or_cleaned(text):
    """Arbitrary code points (surrogates included): either an error naming a character of the text at the
    position it gives, or a cleaned text without controls, format characters or surrogates that cleans to itself."""
    try:
        out = prepare_text(text)
    except ValueError as exc:
        msg = str(exc)
        if "empty" in msg:
            assert not "".join(c for c in text if unicodedata.category(c) != "Cf").strip()
            return
        found = re.search(r"U\+([0-9A-F]{4,6})\b.* at position (\d+)", msg)
        assert found, msg
        assert text[int(found.group(2))] == chr(int(found.group(1), 16))
        return
    assert out.strip() and out == unicodedata.normalize("NFC", out)
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for c in out)
    assert prepare_text(out) == out


def test_nul_no_longer_cuts_speech_short():
    with pytest.raises(ValueError, match="U\\+0000 \\(NUL\\) at position 5"):
        synthesize("Hello\x00world")
    cleaned = synthesize("Hello\u200b\nworld")  # a zero-width space and a line break: spoken as "Hello world"
    assert len(cleaned.phonemes) == len(synthesize("Hello world").phonemes)
