"""A workspace: one folder with the catalog and the imagery store, and the atomic-write helper."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sitewatch.catalog.db import Catalog
from sitewatch.errors import WorkspaceError
from sitewatch.settings import Settings


def slug(name: str) -> str:
    """A file-name-safe form of a site name (names are user input: no separators, no dots)."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-") or "site"


@dataclass
class Workspace:
    """An open workspace. Paths in the catalog are relative to :attr:`store`."""

    root: Path
    catalog: Catalog
    settings: Settings

    @property
    def store(self) -> Path:
        """The imagery store: scenes and observation COGs."""
        return self.root / "store"

    @property
    def reports(self) -> Path:
        """Where reports are written by default."""
        return self.root / "reports"

    @property
    def exports(self) -> Path:
        """Where GeoJSON exports are written by default."""
        return self.root / "exports"

    @classmethod
    def create(cls, root: Path, settings: Settings | None = None) -> Workspace:
        """Make a new workspace in ROOT (which may exist, but must not hold a catalog)."""
        if (root / Catalog.FILENAME).exists():
            raise WorkspaceError(f"{root}: already a sitewatch workspace")
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root}: exists and is not a folder")
        for folder in ("store/scenes", "store/observations", "reports", "exports"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        (root / ".lock").touch()
        catalog = Catalog(root / Catalog.FILENAME, create=True)
        return cls(root=root, catalog=catalog, settings=settings or Settings(workspace=root))

    @classmethod
    def open(cls, root: Path, settings: Settings | None = None) -> Workspace:
        """Open the workspace in ROOT."""
        if not (root / Catalog.FILENAME).is_file():
            raise WorkspaceError(
                f"{root}: not a sitewatch workspace (run `sitewatch init`, or set --workspace / SITEWATCH_WORKSPACE)"
            )
        catalog = Catalog(root / Catalog.FILENAME)
        return cls(root=root, catalog=catalog, settings=settings or Settings(workspace=root))

    def close(self) -> None:
        """Close the catalog."""
        self.catalog.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
