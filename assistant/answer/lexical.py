"""Word-level text helpers shared by routing and composition: terms, idf weights, overlap."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from functools import lru_cache

import snowballstemmer

WORD_RE = re.compile(r"[a-z0-9]+(?:\.\d+)?%?")
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its of on or should "
    "that the their there these this to was we were what when where which who why will with "
    "about after any my our your me you than then them they into out up did done would could "
    "much many more most get got been being also only not no".split()
)
# Split after . ! ? followed by a capital or digit; "e.g." "vs." "et al." do not end sentences.
SENTENCE_RE = re.compile(
    r"(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bvs\.)(?<!\bal\.)(?<!\bDr\.)(?<=[.!?])\s+(?=[A-Z0-9(])"
)


_STEMMER = snowballstemmer.stemmer("english")
# Small numbers written as words match the digits claims use ("at one year" / "at 1 year").
NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}


@lru_cache(maxsize=50_000)
def stem(word: str) -> str:
    """Snowball stem cut to 6 letters: died/die, predictors/predict, symptoms/symptomatic;
    a Latin plural in -i folds too (emboli/embolism)."""
    root = _STEMMER.stemWord(word)
    if len(root) > 4 and root.endswith("i") and root.isalpha():
        root = root[:-1]
    return root[:6]


def terms(text: str) -> list[str]:
    """Content words as stems (see ``stem``), stopwords and stray letters ("what's" -> s) left
    out; number words as digits."""
    return [
        NUMBER_WORDS.get(w) or stem(w)
        for w in WORD_RE.findall(text.lower())
        if w not in STOPWORDS and (len(w) > 1 or w.isdigit())
    ]


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_RE.split(text.strip()) if s.strip()]


class Idf:
    """Inverse document frequency over a collection of texts."""

    def __init__(self, texts: Iterable[str]) -> None:
        df: dict[str, int] = {}
        n = 0
        for text in texts:
            n += 1
            for t in set(terms(text)):
                df[t] = df.get(t, 0) + 1
        self.n = max(n, 1)
        self.weights = {t: math.log(1 + self.n / c) for t, c in df.items()}
        self.default = math.log(1 + self.n)

    def __call__(self, term: str) -> float:
        return self.weights.get(term, self.default)

    def coverage(self, query: AbstractSet[str], text_terms: AbstractSet[str]) -> float:
        """Share of the query's idf weight that the text contains (0..1)."""
        total = sum(self(t) for t in query)
        return sum(self(t) for t in query & text_terms) / total if total else 0.0


def jaccard(a: AbstractSet[str], b: AbstractSet[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0
