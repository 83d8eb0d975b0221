"""Shared test helpers: where the public vectors live."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VECTOR_DIR = REPO / "aka" / "data"  # shipped in the package: the main job runs them too


def milenage_sets() -> list[dict[str, Any]]:
    """Every Milenage conformance set shipped in aka/data (the main job runs the same files)."""
    sets: dict[str, dict[str, Any]] = {}
    for path in sorted(VECTOR_DIR.glob("milenage*.json")):
        data = json.loads(path.read_text())
        for item in data["milenage"] if isinstance(data, dict) else data:
            sets[item["K"] + item["RAND"]] = item
    return list(sets.values())
