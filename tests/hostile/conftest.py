"""The hostile tests share the fuzz harnesses' core rig (``fuzz.core_rig``):
make the repository root importable however pytest was started."""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
