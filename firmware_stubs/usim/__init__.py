"""firmware_stubs.usim: the emulated USIM (engine, profile, card state, personalisation)."""

from __future__ import annotations

from .engine import ATR, UsimEngine, open_card
from .profile import DEFAULT_PROFILE, CardProfile, load_profile, parse_profile
from .state import CardStore

__all__ = [
    "ATR",
    "DEFAULT_PROFILE",
    "CardProfile",
    "CardStore",
    "UsimEngine",
    "load_profile",
    "open_card",
    "parse_profile",
]
