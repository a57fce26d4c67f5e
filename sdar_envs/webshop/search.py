"""WebShop's product search: Pyserini Lucene BM25, top 50.

The index holds each product's title, description, first bullet point and option values, the
fields the original indexes (or the engine's own `contents` text when the data carries it).
"""

from __future__ import annotations

import functools
import re

from sdar_envs.lucene import Bm25Searcher, build_index
from sdar_envs.webshop.catalog import Catalog

TOP_K = 50
_SPACES = re.compile(r"\s+")


class ProductSearch:
    """BM25 search over a catalog; the index is built on first use and cached on disk."""

    def __init__(self, catalog: Catalog, top_k: int = TOP_K) -> None:
        self.catalog = catalog
        self.top_k = top_k
        self.searcher = Bm25Searcher(build_index(f"webshop-{catalog.name}", catalog.documents()))
        self._cached = functools.lru_cache(maxsize=8192)(self._search)

    def search(self, query: str) -> list[str]:
        """The asins of the top `top_k` products for `query`, best first."""
        return list(self._cached(_SPACES.sub(" ", query.strip().lower())))

    def _search(self, query: str) -> tuple[str, ...]:
        hits = self.searcher.search(query, k=self.top_k)
        return tuple(h.docid for h in hits if h.docid in self.catalog.by_asin)
