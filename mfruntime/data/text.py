"""Random English sentences from a small built-in grammar (no downloads).

Sentences are grammatical enough for eSpeak to give them natural prosody and
varied enough (a few hundred words, several templates) to cover English
phonemes. Deterministic for a given ``numpy.random.Generator``.
"""
from __future__ import annotations

import numpy as np

_WORDS = {
    "det": "the a this that every one my your our their some each".split(),
    "adj": (
        "quick lazy bright quiet happy small large old young warm cold brave gentle clever curious tired "
        "busy green blue red golden silver wooden heavy light soft loud calm wild strange friendly hungry "
        "sleepy shiny rough smooth tall short ancient modern hidden lucky careful early late proud"
    ).split(),
    "noun": (
        "fox dog cat bird horse farmer teacher doctor pilot sailor captain robot wizard knight dragon "
        "baker painter child friend neighbour stranger traveller river mountain forest garden village "
        "city market castle bridge tower ship train window door letter story song picture lamp table "
        "kettle apple orange bottle basket mirror clock engine rocket planet island valley meadow road"
    ).split(),
    "verb_t": (
        "found carried painted opened watched followed visited built fixed cleaned moved lifted pushed "
        "pulled chased caught dropped noticed remembered borrowed answered covered measured packed "
        "delivered showed thanked greeted helped"
    ).split(),
    "verb_i": (
        "smiled waited laughed jumped travelled whispered listened wandered rested danced shouted "
        "worked slept paused hurried returned vanished appeared arrived"
    ).split(),
    "adv": (
        "slowly quickly quietly happily carefully suddenly gently proudly bravely softly loudly "
        "eagerly calmly rarely often today yesterday again together"
    ).split(),
    "prep": "near under over behind beside across through toward inside past".split(),
    "time": (
        "in the morning|at noon|after dinner|before sunrise|late at night|on Monday|every summer|"
        "in the winter|at the weekend|during the storm"
    ).split("|"),
    "name": "Anna Ben Clara David Elena Felix Grace Henry Iris Jonas Kate Leo Maya Noah Olivia Paul Rosa Sam Tara Victor".split(),
}

_TEMPLATES = (
    "{Det} {adj} {noun} {verb_t} {det} {noun} {prep} the {noun}.",
    "{Name} {verb_i} {adv} {prep} the {adj} {noun}.",
    "{Time}, {det} {noun} {verb_t} {det} {adj} {noun}.",
    "Did {det} {noun} {verb_t_base} the {noun} {time}?",
    "{Name} and {name} {verb_t} {det} {adj} {noun} {adv}.",
    "{Det} {noun} {verb_i} because the {noun} was {adj}.",
    "Please bring {det} {adj} {noun} to the {noun}.",
    "I think {det} {noun} {verb_i} {prep} the {noun} {time}.",
    "{Name} {verb_t} {det} {noun}, and then {verb_i} {adv}.",
)

_BASE = {
    "found": "find", "carried": "carry", "built": "build", "caught": "catch", "showed": "show",
    "moved": "move", "chased": "chase", "noticed": "notice", "greeted": "greet", "packed": "pack",
}


def _base_form(past: str) -> str:
    if past in _BASE:
        return _BASE[past]
    if past.endswith("ied"):
        return past[:-3] + "y"
    if past.endswith("ed"):
        stem = past[:-2]
        return stem + "e" if stem.endswith(("v", "s", "c", "r", "u")) else stem
    return past


def random_sentence(rng: np.random.Generator) -> str:
    """One random sentence."""
    template = _TEMPLATES[rng.integers(len(_TEMPLATES))]

    def pick(kind: str) -> str:
        words = _WORDS[kind]
        return words[rng.integers(len(words))]

    # Fill each slot with its own draw (a template may use {noun} twice).
    out, rest = [], template
    while "{" in rest:
        before, _, after = rest.partition("{")
        key, _, rest = after.partition("}")
        out.append(before)
        kind = key.lower()
        if kind == "verb_t_base":
            word = _base_form(pick("verb_t"))
        else:
            word = pick(kind)
        out.append(word[:1].upper() + word[1:] if key[:1].isupper() else word)
    out.append(rest)
    return "".join(out)


def random_text(rng: np.random.Generator, n_sentences: int) -> str:
    """``n_sentences`` random sentences joined by spaces."""
    if n_sentences < 1:
        raise ValueError(f"n_sentences must be at least 1, got {n_sentences}")
    return " ".join(random_sentence(rng) for _ in range(n_sentences))
