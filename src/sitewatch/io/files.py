"""Writing files so that a failure leaves nothing half-written."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

from sitewatch.errors import InputError


@contextmanager
def atomic_path(final: Path, *, make_parents: bool = False) -> Iterator[Path]:
    """A temporary path beside FINAL (same filesystem), renamed onto FINAL only if the block succeeds.

    With MAKE_PARENTS, FINAL's folder is created if needed (for the workspace's own folders).

    Raises:
        InputError: If the file cannot be written (no permission, disk full, a file where a folder should be).
    """
    tmp = final.with_name(f".{final.name}.{uuid4().hex}.part")
    try:
        if make_parents:
            final.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:
        raise InputError(final, f"cannot write ({exc.strerror or exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
