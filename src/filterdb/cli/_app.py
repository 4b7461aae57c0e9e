"""The shared click group, the console, and error handling for every command."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click
from rich.console import Console

from ..errors import FilterDBError, UsageError

__all__ = ["app", "main", "abort", "console", "err_console", "EXIT_USAGE", "EXIT_ERROR"]

EXIT_ERROR = 1  # a user error: bad input, missing file, corrupt model
EXIT_USAGE = 2  # click's own code for bad options

class _SafeConsole(Console):
    """A console that shows control and bidi characters of every printed string escaped (cli/_table.py
    ``safe_text``; line feeds kept: messages may span lines): a safety net under the commands, which make
    each stored value a ``Text`` cell (line feeds escaped too) or escape it themselves. Rich's own styling
    is not a string it renders, so colours still work."""

    def render_str(self, text: str, **kwargs: Any) -> Any:
        from ._table import safe_text

        return super().render_str(safe_text(text, newlines=True), **kwargs)


def _make_console(stderr: bool) -> Console:
    # Piped output has no terminal width: rich would wrap wide tables at 80 columns, unreadably.
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal or os.environ.get("COLUMNS") else 200
    # no :emoji: codes: a stored name is shown as written
    return _SafeConsole(stderr=stderr, highlight=False, width=width, emoji=False)


console = _make_console(stderr=False)
err_console = _make_console(stderr=True)


def debug_enabled() -> bool:
    return os.environ.get("FILTERDB_DEBUG", "") not in ("", "0")


def abort(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print one error line to stderr and exit."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True, markup=True, highlight=False)
    raise SystemExit(code)


class LazyGroup(click.Group):
    """A click group whose commands live in modules imported on first use.

    ``lazy_commands`` maps a command name to the module (relative to this package) whose import registers
    it with ``@app.command``: start-up then pays only for the command that runs (``--help`` imports all).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, str] = {}

    def _load(self, name: str) -> None:
        module = self.lazy_commands.get(name)
        if module is not None and name not in self.commands:
            import importlib

            importlib.import_module(module, __package__)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                             list[str]]:
        """click's lookup, with a "did you mean" for a mistyped command (as `analyze STORE pac` has)."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            from ..errors import suggest

            raise click.UsageError(suggest(name, self.list_commands(ctx), "command"), ctx)
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="filterdb")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors (also FILTERDB_DEBUG=1).")
def app(debug: bool) -> None:
    """filterdb: read, check, store and analyse the trained convolution filters of CNNs."""
    if debug:
        os.environ["FILTERDB_DEBUG"] = "1"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: turns FilterDBError into a one-line error and exit code 1."""
    try:
        app.main(args=argv, prog_name="filterdb", standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        raise SystemExit(130)
    except click.ClickException as e:
        e.show()
        raise SystemExit(e.exit_code)
    except UsageError as e:  # a mistake in how filterdb was called: click's exit code for bad usage
        if debug_enabled():
            raise
        abort(_escape(str(e)), EXIT_USAGE)
    except FilterDBError as e:
        if debug_enabled():
            raise
        abort(_escape(str(e)))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise SystemExit(130)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - last line of defence: never a bare traceback
        if debug_enabled():
            raise
        abort(f"unexpected {type(e).__name__}: {_escape(str(e))} (run with --debug for the traceback and report it)")
    raise SystemExit(0)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
