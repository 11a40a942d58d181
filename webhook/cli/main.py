"""The `egress-guard` command: subcommands live in webhook.cli.commands, one module each.

They are imported only when invoked (or listed by --help), so `egress-guard check` never loads
gunicorn and `egress-guard serve` never loads what only the offline tools need.
"""

from __future__ import annotations

import importlib
import pkgutil

import click

from webhook import __version__
from webhook.cli import commands


class LazyGroup(click.Group):
    """Commands are the modules of webhook.cli.commands (module `a_b` is command `a-b`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(
            info.name.replace("_", "-")
            for info in pkgutil.iter_modules(commands.__path__)
            if not info.name.startswith("_")
        )

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.list_commands(ctx):
            return None
        module = importlib.import_module(f"{commands.__name__}.{cmd_name.replace('-', '_')}")
        command = module.COMMAND
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with its first sentence whole (click cuts it at the terminal's width),
        wrapped under itself."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="egress-guard")
def main() -> None:
    """egress-guard: every workload declares what it may reach, and egress is made to obey."""
