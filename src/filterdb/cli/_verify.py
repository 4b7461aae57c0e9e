"""filterdb verify: check every byte of a store and say which models to re-ingest."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .._format import count
from ._app import app, console, err_console


@app.command("verify")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--record-checksums", is_flag=True,
              help="First record the checksums of shards that have none (stores made by an older filterdb), "
                   "after checking their size and structure.")
def verify_cmd(store: Path, as_json: bool, record_checksums: bool) -> None:
    """Check STORE: the catalog, and every shard's size, structure and checksum.

    Exit code 0 when the store is intact, 1 when something is damaged: the output names each damaged
    shard and the models to re-ingest (`filterdb rm STORE ID`, then ingest the file again).
    """
    from ..store import open_store, verify_store
    from ..store import record_checksums as record

    handle = open_store(store, mode="a" if record_checksums else "r")
    recorded = record(handle) if record_checksums else 0
    report = verify_store(handle)
    handle.close()
    reingest = report.models_to_reingest()
    if as_json:
        click.echo(json.dumps({
            "ok": report.ok, "models": report.n_models, "shards": report.n_shards, "bytes_checked": report.n_bytes,
            "catalog_damaged": report.catalog_damaged, "checksums_recorded": recorded,
            "damage": [{"what": d.what, "model_id": d.model_id, "model": d.model, "source": d.source}
                       for d in report.damage],
            "reingest": [{"model_id": mid, "model": name, "source": source} for mid, name, source in reingest],
            "without_checksum": report.without_checksum, "unreferenced": report.unreferenced,
        }))
    else:
        if recorded:
            console.print(f"recorded the checksums of {count(recorded)} shard(s)")
        if report.catalog_damaged:
            err_console.print(f"[bold red]damaged:[/] {report.damage[0].what}", soft_wrap=True, highlight=False)
        else:
            for d in report.damage:
                owner = f" (model {d.model!r}, id {d.model_id})" if d.model_id is not None else ""
                err_console.print(f"[bold red]damaged:[/] {d.what}{owner}", soft_wrap=True, highlight=False)
            if reingest:
                err_console.print(f"re-ingest {len(reingest)} model(s): remove each and ingest its file again:",
                                  soft_wrap=True, highlight=False)
                for mid, name, source in reingest:
                    again = f"filterdb ingest {store} {source}" if source else "ingest its file again"
                    err_console.print(f"  filterdb rm {store} {mid} && {again}    # {name}", soft_wrap=True,
                                      highlight=False, markup=False)
            if report.without_checksum:
                err_console.print(
                    f"note: {count(len(report.without_checksum))} shard(s) have no recorded checksum (written by an "
                    "older filterdb): their size and structure were checked, their values could not be; "
                    f"`filterdb verify {store} --record-checksums` records them", soft_wrap=True, highlight=False)
            if report.unreferenced:
                err_console.print(f"note: {count(len(report.unreferenced))} unreferenced file(s) left by an "
                                  "interrupted write; the next write to the store removes them", soft_wrap=True,
                                  highlight=False)
            verdict = "ok" if report.ok else f"{count(len(report.damage))} problem(s)"
            console.print(f"verified {store}: {count(report.n_models)} model(s), {count(report.n_shards)} shard(s), "
                          f"{count(report.n_bytes)} bytes checksummed: {verdict}")
    if not report.ok:
        raise SystemExit(1)
