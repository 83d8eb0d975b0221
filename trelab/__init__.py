"""trelab's shared kernel: the error tree and small helpers every package uses.

The work lives in the top-level packages (``aka``, ``tpm``, ``uicc``, ``firmware_stubs``,
``host``, ``network``, ``bench``); this package only holds what they all share.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
