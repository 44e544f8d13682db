"""Load the locust/ folder's Locust-free helper modules by path.

The folder is called `locust`, like the package; putting it on sys.path could shadow the real one, and
importing the locustfile itself would gevent-patch the pytest process. The helpers import no Locust.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
LOCUST_DIR = ROOT / "locust"
LOCUSTFILE = LOCUST_DIR / "locustfile.py"
IMAGES_DIR = ROOT / "images"


def load(name: str) -> ModuleType:
    """Import locust/<name>.py under a private module name."""
    key = f"_lab_locust_{name}"
    if key in sys.modules:
        return sys.modules[key]
    # Helpers import each other by plain name, as Locust's sys.path gives them; appended, so the folder
    # shadows nothing.
    if str(LOCUST_DIR) not in sys.path:
        sys.path.append(str(LOCUST_DIR))
    spec = importlib.util.spec_from_file_location(key, LOCUST_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    assert "gevent.monkey" not in sys.modules or not _patched(), "a helper module imported Locust"
    return module


def _patched() -> bool:
    from gevent import monkey

    return monkey.is_module_patched("socket")
