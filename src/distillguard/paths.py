"""Where the real corpora live: ../shared/data when present, else the bundled subset."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DATA = PACKAGE_DIR / "data" / "bundled"
RULES_DIR = PACKAGE_DIR / "rules"
MODELS_DIR = PACKAGE_DIR / "models"


def shared_dir() -> Path | None:
    """Locate the project's ``shared/`` folder (spec, tools, data), if any.

    Looked up, in order: ``$DISTILLGUARD_SHARED``, then ``../shared`` next to the repository
    checkout this package was installed from, then ``../shared`` of the working directory.
    """
    candidates = []
    env = os.environ.get("DISTILLGUARD_SHARED")
    if env:
        candidates.append(Path(env))
    # src/distillguard -> repo root -> sibling "shared"
    candidates.append(PACKAGE_DIR.parent.parent.parent / "shared")
    candidates.append(Path.cwd().parent / "shared")
    candidates.append(Path.cwd() / "shared")
    for c in candidates:
        if (c / "spec" / "events.md").exists() or (c / "data").is_dir():
            return c.resolve()
    return None


def shared_data_dir() -> Path | None:
    """``shared/data`` with the full public corpora, or None when only the bundled subset exists."""
    s = shared_dir()
    if s is not None and (s / "data").is_dir():
        return s / "data"
    return None
