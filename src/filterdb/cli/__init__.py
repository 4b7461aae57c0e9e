"""The ``filterdb`` command: one module per command, registered on one click group.

Library code never prints; everything a user sees in a terminal is produced here. User errors end in
:func:`filterdb.cli._app.abort`: one line on stderr, exit code 1, no traceback (``--debug`` or
``FILTERDB_DEBUG=1`` shows it).
"""

from __future__ import annotations

from ._app import app, main
from . import _check, _inspect  # noqa: F401  (command registration)
from . import _store  # noqa: F401  (store commands: init, ingest, models, layers, sql, rm, stats, export)
from . import _analyze  # noqa: F401  (analyze STORE pca | drift | degeneration)
from . import _report, _demo  # noqa: F401  (report STORE, demo)

__all__ = ["app", "main"]
