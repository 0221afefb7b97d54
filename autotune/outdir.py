"""Output directories (exports, reports): refuse unsafe targets, write all files or none."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path

from autotune.errors import AutotuneError

# What an export directory holds: TF Serving's files alone, or Kubernetes / KServe manifests beside them.
EXPORT_FORMATS = ("tfserving", "k8s", "kserve")
_SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr", "/var")


def check_out_dir(out: Path, force: bool) -> Path:
    """Refuse system directories, the home directory, and replacing a non-empty one without --force."""
    try:
        target = out.expanduser().resolve()
    except RuntimeError:  # "~name" of a user that does not exist
        raise AutotuneError(f"cannot expand {str(out)!r}: no such user") from None
    if str(target) in _SYSTEM_DIRS or target == Path.home().resolve():
        raise AutotuneError(f"refusing to write into {target}: pick a dedicated directory")
    if target.exists() and not target.is_dir():
        raise AutotuneError(f"{target} exists and is not a directory")
    if target.exists() and any(target.iterdir()) and not force:
        raise AutotuneError(f"{target} is not empty; pass --force to replace it")
    return target


def write_dir(files: dict[str, str | bytes], target: Path, executable: Collection[str] = ()) -> None:
    """Write FILES into TARGET atomically: a sibling temp dir renamed into place."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as exc:
        raise AutotuneError(f"cannot write to {target}: {exc.strerror}") from None
    try:
        for name, content in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)  # e.g. assets.extra/
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
            if name in executable:
                os.chmod(path, 0o755)  # noqa: S103
        # Readable by the TF Serving container's user and by whoever opens the report.
        os.chmod(staging, 0o755)  # noqa: S103
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            target.rename(backup)
            staging.rename(target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            staging.rename(target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise AutotuneError(f"cannot write to {target}: {exc.strerror}") from None
