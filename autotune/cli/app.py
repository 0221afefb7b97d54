"""The `autotune` application and its command groups; each command module registers on these."""

from __future__ import annotations

from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from autotune import __version__, notes, tables


class WholeHelpGroup(TyperGroup):
    """A command group whose list gives each command's first paragraph whole, wrapped: click would cut it."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, " ".join((command.help or "").split("\n\n")[0].split())))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


_SETTINGS = {"help_option_names": ["-h", "--help"]}
# Help is plain text, wrapped and never cut at any width (rich's tables cut long option names at 80 columns),
# and a study's table named in it ("[load]") is not markup to be swallowed.
_PLAIN_HELP: dict = {"rich_markup_mode": None, "cls": WholeHelpGroup}
app = typer.Typer(
    name="autotune",
    help="Measure and tune TensorFlow Serving on this machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=_SETTINGS,
    **_PLAIN_HELP,
)
models_app = typer.Typer(
    help="Built-in models (random weights, real architectures).", no_args_is_help=True, **_PLAIN_HELP
)
app.add_typer(models_app, name="models")
db_app = typer.Typer(help="The results database.", no_args_is_help=True, **_PLAIN_HELP)
app.add_typer(db_app, name="db")
schedule_app = typer.Typer(help="Nightly (or any cron) retunes run by the daemon.", no_args_is_help=True, **_PLAIN_HELP)
app.add_typer(schedule_app, name="schedule")
cron_app = typer.Typer(
    help="Retunes from the system's cron instead of the daemon's schedules.", no_args_is_help=True, **_PLAIN_HELP
)
app.add_typer(cron_app, name="cron")


def _version(value: bool) -> None:
    if value:
        print(f"autotune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="no notes on stderr (which backend, what runs); warnings and errors stay")
    ] = False,
    plain: Annotated[bool, typer.Option("--plain", help="print tables as tab-separated values")] = False,
) -> None:
    """Measure and tune TensorFlow Serving on this machine."""
    notes.QUIET, tables.PLAIN = quiet, plain
