"""The one place where library errors become a CLI's error line and exit code."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from ugss.errors import UGSSError


def run_cli(app: Callable[[], object]) -> None:
    """Run a typer app; a ``UGSSError`` becomes ``Error: ...`` on stderr and its exit code."""
    try:
        app()
    except UGSSError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)


def setup_logging(verbose: bool) -> None:
    """The CLI owns logging; the library only logs to its named loggers."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
