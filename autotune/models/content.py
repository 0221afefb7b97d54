"""A model's content hash: the same path with other bytes is another model."""

from __future__ import annotations

import hashlib
from pathlib import Path


def content_hash(version_dir: Path) -> str:
    """SHA-256 over every file of a SavedModel version (relative path and bytes), in a stable order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in version_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(version_dir)).encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
