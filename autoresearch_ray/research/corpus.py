"""Corpora of passages: the running interpreter's standard library docstrings, or a directory.

The standard library is read from its source files with ``ast``; no module is imported to read
it, so reading has no side effects and needs no optional dependency. A passage is one docstring
(module, class, function or method) or one paragraph group of a text file, with where it is.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import sysconfig
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import BadInputError

#: Extensions read from a directory corpus.
TEXT_SUFFIXES = (".md", ".rst", ".txt", ".py")
#: Files larger than this are skipped (and counted): generated or data files, not prose.
MAX_FILE_BYTES = 1_000_000
#: Passages shorter than this carry no answer ("Return self.", "Docstring.").
MIN_PASSAGE_CHARS = 40
#: Long text sections are cut into passages of about this many characters, on paragraph ends.
MAX_PASSAGE_CHARS = 1500

# Parts of the standard library that are tests, demos or tooling rather than documentation.
_SKIP_DIRS = {
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "turtledemo",
    "ensurepip",
    "pydoc_data",
    "__phello__",
}


@dataclass(frozen=True)
class Passage:
    """One retrievable unit of text, with its source."""

    pid: int
    ref: str  # dotted name (asyncio.tasks.gather) or file path with heading
    title: str
    text: str
    path: str
    line: int
    kind: str  # module | class | function | section

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@dataclass
class CorpusStats:
    """What reading a corpus found and what it skipped."""

    files: int = 0
    passages: int = 0
    skipped_binary: int = 0
    skipped_oversized: int = 0
    skipped_unparsable: int = 0


def stdlib_root() -> Path:
    """Where the running interpreter's standard library sources are."""
    return Path(sysconfig.get_paths()["stdlib"])


def read_stdlib(root: Path | None = None) -> tuple[list[Passage], CorpusStats]:
    """Every docstring of the standard library's ``.py`` files, one passage each."""
    root = root or stdlib_root()
    if not root.is_dir():
        raise BadInputError(f"standard library sources not found at {root}")
    stats = CorpusStats()
    passages: list[Passage] = []
    for path in sorted(_walk(root, (".py",))):
        module = _module_name(root, path)
        if module is None:
            continue
        _read_python(path, module, passages, stats, display=str(path.relative_to(root)))
    stats.passages = len(passages)
    return passages, stats


def read_directory(path: str | os.PathLike[str]) -> tuple[list[Passage], CorpusStats]:
    """Passages of every ``.md``, ``.rst``, ``.txt`` and ``.py`` file below ``path``."""
    root = Path(path).expanduser()
    if "\x00" in str(path):
        raise BadInputError("corpus.path contains a NUL byte")
    if not root.exists():
        raise BadInputError(f"corpus.path {root} does not exist")
    if not root.is_dir():
        raise BadInputError(f"corpus.path {root} is not a directory")
    root = root.resolve()
    stats = CorpusStats()
    passages: list[Passage] = []
    for file in sorted(_walk(root, TEXT_SUFFIXES)):
        rel = str(file.relative_to(root))
        try:
            size = file.stat().st_size
        except OSError:
            continue
        if size > MAX_FILE_BYTES:
            stats.skipped_oversized += 1
            continue
        raw = file.read_bytes()
        if b"\x00" in raw[:8192]:
            stats.skipped_binary += 1
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            stats.skipped_binary += 1
            continue
        if file.suffix == ".py":
            module = ".".join(Path(rel).with_suffix("").parts)
            _read_python(file, module, passages, stats, display=rel, source=text)
        else:
            stats.files += 1
            for title, line, body in _sections(text, file.suffix):
                _add(
                    passages,
                    f"{rel}#{_slug(title)}" if title else rel,
                    title or rel,
                    body,
                    rel,
                    line,
                    "section",
                )
    stats.passages = len(passages)
    if not passages:
        raise BadInputError(
            f"corpus.path {root} has no readable passages in {', '.join(TEXT_SUFFIXES)} files "
            f"({stats.skipped_binary} binary and {stats.skipped_oversized} oversized skipped)"
        )
    return passages, stats


def fingerprint_files(root: Path, suffixes: tuple[str, ...]) -> str:
    """A hash of every file's path, size and mtime: changes when the corpus does."""
    digest = hashlib.sha256()
    for path in sorted(_walk(root, suffixes)):
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _walk(root: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        # Sorted and pruned in place: a stable order makes passage ids deterministic.
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(suffixes) and not name.startswith("."):
                yield Path(dirpath) / name


def _module_name(root: Path, path: Path) -> str | None:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if any(not p.isidentifier() for p in parts):
        return None  # not importable as a module (e.g. "test_foo-bar.py")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or any(p.startswith("_") and p != "__main__" for p in parts[:1]):
        # Private top-level modules (_pydecimal, _collections_abc) document implementation.
        return None
    return ".".join(parts)


def _read_python(
    path: Path,
    module: str,
    out: list[Passage],
    stats: CorpusStats,
    display: str,
    source: str | None = None,
) -> None:
    try:
        source = source if source is not None else path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        stats.skipped_unparsable += 1
        return
    stats.files += 1
    doc = ast.get_docstring(tree, clean=True)
    if doc:
        _add(out, module, module, doc, display, 1, "module")
    _visit(tree.body, module, out, display)


def _visit(body: list[ast.stmt], prefix: str, out: list[Passage], display: str) -> None:
    for node in body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name.startswith("_") and node.name != "__init__":
                continue
            name = f"{prefix}.{node.name}"
            doc = ast.get_docstring(node, clean=True)
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            if doc:
                _add(out, name, name, doc, display, node.lineno, kind)
            if isinstance(node, ast.ClassDef):
                _visit(node.body, name, out, display)


def _add(
    out: list[Passage], ref: str, title: str, text: str, path: str, line: int, kind: str
) -> None:
    text = text.strip()
    if len(text) < MIN_PASSAGE_CHARS:
        return
    out.append(Passage(len(out), ref, title, text[: MAX_PASSAGE_CHARS * 2], path, line, kind))


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")


def _sections(text: str, suffix: str) -> Iterator[tuple[str, int, str]]:
    """(heading, first line, body) of each section, long ones cut on paragraph ends."""
    lines = text.splitlines()
    heading, start = "", 1
    buf: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        md = _MD_HEADING.match(line) if suffix in (".md", ".txt") else None
        rst = (
            suffix == ".rst"
            and i + 1 < len(lines)
            and line.strip()
            and _RST_UNDERLINE.match(lines[i + 1])
            and len(lines[i + 1]) >= len(line.strip())
        )
        if md or rst:
            yield from _cut(heading, start, buf)
            heading = md.group(2) if md else line.strip()
            i += 2 if rst else 1
            start, buf = i + 1, []  # 1-based number of the first line after the heading
            continue
        buf.append(line)
        i += 1
    yield from _cut(heading, start, buf)


def _cut(heading: str, start: int, lines: list[str]) -> Iterator[tuple[str, int, str]]:
    chunk: list[str] = []
    chunk_start = start
    size = 0
    for offset, line in enumerate(lines):
        if not chunk and not line.strip():
            chunk_start = start + offset + 1
            continue
        chunk.append(line)
        size += len(line) + 1
        if size >= MAX_PASSAGE_CHARS and not line.strip():
            yield heading, chunk_start, "\n".join(chunk).strip()
            chunk, size = [], 0
            chunk_start = start + offset + 1
    if "\n".join(chunk).strip():
        yield heading, chunk_start, "\n".join(chunk).strip()


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]
