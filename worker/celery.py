"""The app `celery -A worker worker` and `celery -A worker beat` find, from the environment.

Only this module builds an app at import; everything else calls
`worker.app.create_app`. A setting it cannot use stops the process with one line
naming it (exit 1), not a traceback.
"""

from __future__ import annotations

import sys

from models.errors import SyncWorkerError
from worker.app import create_app
from worker.settings import Settings

try:
    app = create_app(Settings.from_env())
except SyncWorkerError as exc:
    sys.exit(f"syncworker: {exc}")
