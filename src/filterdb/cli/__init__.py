"""The ``filterdb`` command: one module per command, registered on one click group.

Library code never prints; everything a user sees in a terminal is produced here. User errors end in
:func:`filterdb.cli._app.abort`: one line on stderr, exit code 1, no traceback (``--debug`` or
``FILTERDB_DEBUG=1`` shows it).
"""

from __future__ import annotations

from ._app import app, main

# Command registration: which module's import registers each command. The modules are imported on first
# use (see LazyGroup), so `filterdb check` never pays for the store, analysis, report or demo commands.
app.lazy_commands.update({
    "check": "._check",
    "inspect": "._inspect",
    # store commands: init, models, layers, sql, rm, stats (+ ingest, export, import-hdf5)
    **dict.fromkeys(("init", "models", "layers", "sql", "rm", "stats"), "._store"),
    "ingest": "._ingest",
    "export": "._export",
    "import-hdf5": "._export",
    "verify": "._verify",
    "analyze": "._analyze",  # analyze STORE pca | drift | degeneration
    "report": "._report",
    "demo": "._demo",
    "monitor": "._monitor",  # monitor LOG: the log of filterdb.Monitor during training
    "compare": "._compare", "similar": "._similar", "lineage": "._lineage",  # model lineage from weights
    "prune": "._prune",  # a data-free prune plan (docs/prune.md)
})

__all__ = ["app", "main"]
