"""``python -m ugss``: the version (``--version``) and the commands UGSS installs."""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from ugss.cli_support import VersionOpt, make_app, run_cli

app = make_app("UGSS: hemorrhage segmentation on head CT. Each command has its own --help.")


def commands() -> list[str]:
    """The console scripts of this installation (pyproject's [project.scripts])."""
    return sorted(
        ep.name for ep in entry_points(group="console_scripts") if ep.value.startswith("ugss.")
    )


@app.command()
def main_command(version: VersionOpt = False) -> None:
    """List the UGSS commands."""
    typer.echo("UGSS commands: " + ", ".join(commands()))


def main() -> None:
    run_cli(app, prog="python -m ugss")


if __name__ == "__main__":
    main()
