"""The config corpus (tests/configs/), made ready to load.

Files holding a secret-looking value are committed with placeholders and filled in here at test
time, so the repository never carries token- or key-shaped text (secret scanners would flag it).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

SOURCE = Path(__file__).parent / "configs"

# Placeholder -> test-time value. The token is made of a fixed pattern: it only has to look
# like a DigitalOcean token, not be one.
_FILL = {
    "@DO_TOKEN_A@": "dop_v1_" + "0123456789abcdef" * 4,
    "@DO_TOKEN_B@": "dop_v1_" + "fedcba9876543210" * 4,
    "@KEY_BEGIN@": "-----BEGIN " + "OPENSSH PRIVATE KEY-----",
    "@KEY_END@": "-----END " + "OPENSSH PRIVATE KEY-----",
}

_dir: Path | None = None


def corpus_dir() -> Path:
    """A private copy of tests/configs with placeholders filled (made once per process)."""
    global _dir
    if _dir is None:
        _dir = Path(tempfile.mkdtemp(prefix="zdd-corpus-")) / "configs"
        _dir.mkdir()
        atexit.register(shutil.rmtree, _dir.parent, True)
        for src in SOURCE.iterdir():
            text = src.read_text()
            for placeholder, value in _FILL.items():
                text = text.replace(placeholder, value)
            (_dir / src.name).write_text(text)
    return _dir
