"""An app module whose import fails, as a typo in a user's module would."""

from __future__ import annotations

import jobrunner_no_such_dependency  # noqa: F401
