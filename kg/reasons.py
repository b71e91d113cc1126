"""Reasons beyond graph links: the rarest words two products' texts share, or the nearest
category both sit under, each sized by how many catalogue products share it (as a graph path is
sized by its shared node), so that they rank among the graph paths by specificity."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from kg.schema import CATEGORY_PATH_SEP, Product

# At most this many shared words, rarest first; shorter words carry little.
MAX_WORDS, MIN_WORD = 5, 3
_WORD = re.compile(rf"[^\W\d_]{{{MIN_WORD},}}")
# Words too common in product text to be a reason on their own.
_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        """and the for with from this that your you are our all its new one set pack size inch
        inches free each per not can will has have was were more most very his her him she they
        them their who what which when where how than then also into about over only just like
        such""",
    )
)


class SharedWords:
    """Words both products' texts contain; `size`: products containing the rarest of them."""

    __slots__ = ("words", "size")

    def __init__(self, words: list[str], size: int) -> None:
        self.words, self.size = words, size


def product_words(product: Product) -> frozenset[str]:
    """The words a product is known by: in its title, description and brand's name."""
    return _words(f"{product.title} {product.description} {product.brand or ''}")


@lru_cache(maxsize=2**14)  # answers repeat products: the regex over a description is the cost
def _words(text: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(text.casefold()) if w not in _STOPWORDS)


def ancestors(category_id: str) -> list[str]:
    """`category_id` and the categories above it, leaf first ("A > B > C", "A > B", "A")."""
    parts = category_id.split(CATEGORY_PATH_SEP)
    return [CATEGORY_PATH_SEP.join(parts[:n]) for n in range(len(parts), 0, -1)]


class ReasonIndex:
    """How many catalogue products contain each word and sit under each category (at any
    depth), counted once: what a shared word or category ancestor is measured by."""

    def __init__(self, products: Iterable[Product], uninformative_share: float = 0.5) -> None:
        self.word_counts: Counter[str] = Counter()
        self.subtree_counts: Counter[str] = Counter()
        self.total = 0
        for product in products:
            if not product.in_catalogue:  # a stub: no text, no categories
                continue
            self.total += 1
            self.word_counts.update(product_words(product))
            self.subtree_counts.update({a for c in product.categories for a in ancestors(c)})
        # A word or category most products share explains nothing.
        self.limit = max(2, uninformative_share * self.total)

    def shared_words(self, ours: Product, theirs: Product) -> SharedWords | None:
        """The rarest words both texts contain (None: none below the uninformative limit)."""
        counts = self.word_counts
        shared = [w for w in product_words(ours) & product_words(theirs) if counts[w] <= self.limit]
        if not shared:
            return None
        words = sorted(shared, key=lambda w: (counts[w], w))[:MAX_WORDS]
        return SharedWords(words, max(2, counts[words[0]]))  # both products contain it

    def shared_ancestor(self, ours: Product, theirs: Product) -> tuple[str, int] | None:
        """The smallest category above both products' categories, with its product count; None
        when they share a category directly (that is a graph path already) or nothing small."""
        if set(ours.categories) & set(theirs.categories):
            return None
        mine = {a for c in ours.categories for a in ancestors(c)}
        common = mine.intersection(a for c in theirs.categories for a in ancestors(c))
        sized = [(max(2, self.subtree_counts[a]), a) for a in common]
        sized = [(n, a) for n, a in sized if n <= self.limit]
        if not sized:
            return None
        # The smallest; of equal size the deepest (the nearest to both products).
        return min(sized, key=lambda s: (s[0], -s[1].count(CATEGORY_PATH_SEP), s[1]))
