"""A BM25 index over a corpus, cached on disk under a fingerprint of the corpus.

BM25 comes from ``bm25s`` (sparse-matrix scoring: a query over ~5,000 passages takes well under
a millisecond, where a pure-Python scorer walks every passage), and its arrays save and load
memory-mapped, which is what lets every worker share one copy. Built once per corpus version;
afterwards ``open_index`` only loads.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadInputError
from .corpus import (
    TEXT_SUFFIXES,
    CorpusStats,
    Passage,
    fingerprint_files,
    read_directory,
    read_stdlib,
    stdlib_root,
)

#: Bump when the passage format or the tokenizer changes: old caches are then rebuilt.
INDEX_FORMAT = 3
_WORD = re.compile(r"[a-z][a-z0-9_]+")


def corpus_fingerprint(path: str | None) -> str:
    """Identity of a corpus version: the stdlib of this interpreter, or a directory's files."""
    if path is None:
        root = stdlib_root()
        version = ".".join(map(str, sys.version_info[:3]))
        return f"stdlib-{version}-{fingerprint_files(root, ('.py',))}-v{INDEX_FORMAT}"
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise BadInputError(f"corpus.path {root} does not exist or is not a directory")
    return f"dir-{fingerprint_files(root, TEXT_SUFFIXES)}-v{INDEX_FORMAT}"


@dataclass
class SearchHit:
    """A passage and its BM25 score for one query."""

    passage: Passage
    score: float


class CorpusIndex:
    """Passages plus their BM25 index; ``search`` is the one query method."""

    def __init__(
        self,
        fingerprint: str,
        passages: list[Passage],
        retriever: Any,
        tokenizer: Any,
        stats: CorpusStats | None = None,
    ) -> None:
        self.fingerprint = fingerprint
        self.passages = passages
        self.retriever = retriever
        self.tokenizer = tokenizer
        self.stats = stats or CorpusStats(passages=len(passages))
        # Words the index knows; a query word outside it cannot match and is dropped.
        self._vocab = set(retriever.vocab_dict)

    def __getstate__(self) -> dict[str, Any]:
        # The stemmer is a C extension's bound method and does not pickle (Ray's object store
        # pickles the index once); it is stateless, so the copy gets a fresh one.
        state = self.__dict__.copy()
        tokenizer = copy.copy(self.tokenizer)
        tokenizer.stemmer = None
        state["tokenizer"] = tokenizer
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.tokenizer.stemmer = _stemmer()

    @classmethod
    def build(
        cls, fingerprint: str, passages: list[Passage], stats: CorpusStats | None = None
    ) -> CorpusIndex:
        """Tokenize (English stopwords removed) and index the passages."""
        import bm25s

        tokenizer = _tokenizer()
        tokens = tokenizer.tokenize(
            [_index_text(p) for p in passages], return_as="tuple", show_progress=False
        )
        # b=0.5 rather than 0.75: long docstrings (asyncio.gather) are often the right answer.
        retriever = bm25s.BM25(b=0.5)
        retriever.index(tokens, show_progress=False)
        return cls(fingerprint, passages, retriever, tokenizer, stats)

    def save(self, directory: Path) -> None:
        """Write the index, vocabulary and passages; atomically, so readers never see half."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=directory.parent))
        try:
            self.retriever.save(str(tmp / "bm25"))
            self.tokenizer.save_vocab(str(tmp / "bm25"))
            with open(tmp / "passages.jsonl", "w", encoding="utf-8") as fh:
                for p in self.passages:
                    fh.write(json.dumps(p.as_dict()) + "\n")
            (tmp / "meta.json").write_text(
                json.dumps(
                    {
                        "fingerprint": self.fingerprint,
                        "format": INDEX_FORMAT,
                        "stats": self.stats.__dict__,
                    }
                )
            )
            if directory.exists():
                shutil.rmtree(directory)
            tmp.rename(directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path) -> CorpusIndex:
        """Load a saved index, its arrays memory-mapped (shared by every process reading it)."""
        import bm25s

        meta = json.loads((directory / "meta.json").read_text())
        retriever = bm25s.BM25.load(str(directory / "bm25"), mmap=True)
        tokenizer = _tokenizer()
        tokenizer.load_vocab(str(directory / "bm25"))
        with open(directory / "passages.jsonl", encoding="utf-8") as fh:
            passages = [Passage(**json.loads(line)) for line in fh]
        return cls(
            meta["fingerprint"],
            passages,
            retriever,
            tokenizer,
            CorpusStats(**meta.get("stats", {})),
        )

    def search(
        self,
        query: str,
        k: int = 5,
        exclude_refs: frozenset[str] = frozenset(),
        exclude_modules: frozenset[str] = frozenset(),
    ) -> list[SearchHit]:
        """The ``k`` best passages for ``query``, skipping excluded refs and their modules."""
        tokens = self.tokenizer.tokenize(
            [query], update_vocab=False, return_as="string", show_progress=False
        )
        tokens = [[t for t in tokens[0] if t in self._vocab]]
        if not tokens[0]:
            return []
        want = min(len(self.passages), k + len(exclude_refs) * 4 + 20 * bool(exclude_modules))
        docs, scores = self.retriever.retrieve(tokens, k=want, show_progress=False, n_threads=1)
        hits = []
        for doc, score in zip(docs[0].tolist(), scores[0].tolist(), strict=True):
            if score <= 0:
                break
            passage = self.passages[int(doc)]
            if passage.ref in exclude_refs or module_of(passage.ref) in exclude_modules:
                continue
            hits.append(SearchHit(passage, float(score)))
            if len(hits) == k:
                break
        return hits


@functools.cache
def _stemmer() -> Any:
    import Stemmer

    # Snowball stemming: a question says "coroutines" where the docstring says "coroutine".
    # Built once per process: agents stem every candidate passage of every execution.
    return Stemmer.Stemmer("english").stemWord


@functools.cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def _tokenizer() -> Any:
    import bm25s

    return bm25s.tokenization.Tokenizer(stopwords="en", stemmer=_stemmer())


def module_of(ref: str) -> str:
    """The top-level name of a dotted ref (``asyncio`` for ``asyncio.tasks.gather``)."""
    return ref.split(".", 1)[0].split("/", 1)[0].split("#", 1)[0]


def _index_text(p: Passage) -> str:
    # The dotted name is searchable too ("gather", "tasks"): users ask with API names.
    return f"{p.ref.replace('.', ' ').replace('_', ' ')} {p.title} {p.text}"


def words(text: str) -> list[str]:
    """Lower-case content words of a text, stopwords removed (the tokenizer's list)."""
    stop = _stopwords()
    return [w for w in _WORD.findall(text.lower()) if w not in stop]


def stems(text: str) -> list[str]:
    """Stemmed content words, as the index sees them."""
    stem = _stemmer()
    return [stem(w) for w in words(text)]


_OPEN_LOCK = threading.Lock()


def open_index(path: str | None, cache_dir: str | Path) -> tuple[CorpusIndex, dict[str, Any]]:
    """The index of a corpus (``None``: the standard library), from the cache or built now.

    Returns the index and timings: ``built`` or ``loaded``, seconds, passages.
    """
    started = time.perf_counter()
    fingerprint = corpus_fingerprint(path)
    directory = Path(cache_dir).expanduser().resolve() / fingerprint
    with _OPEN_LOCK:
        if (directory / "meta.json").is_file():
            index = CorpusIndex.load(directory)
            how = "loaded"
        else:
            passages, stats = read_stdlib() if path is None else read_directory(path)
            index = CorpusIndex.build(fingerprint, passages, stats)
            index.save(directory)
            how = "built"
    return index, {
        "index": how,
        "seconds": round(time.perf_counter() - started, 3),
        "passages": len(index.passages),
        "directory": str(directory),
    }
