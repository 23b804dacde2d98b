"""The house rules of every ``ltgcast`` flag: help with its default, one-line refusals, hidden old spellings.

* :class:`Parser` is the parser class of the whole tree (subparsers inherit it):
  its help shows each option's default (:class:`HelpFormatter`), and a bad flag
  is refused in one line on stderr (``ltgcast run: unrecognized arguments:
  --nope (see ltgcast run --help)``) with exit status 2, before anything heavy
  is imported.
* One spelling per concept across the subcommands: ``--model-base``,
  ``--model-name`` and ``--scorer``. The old spellings (:data:`RENAMED`) still
  work for one release, hidden from the help, through :func:`add_old_spelling`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

#: Old spelling -> new, for one release (the README lists them too).
RENAMED = {
    "models --base": "models --model-base",
    "models --name": "models --model-name",
    "nowcast --name": "nowcast --model-name",
    "nowcast --backend": "nowcast --scorer",
    "bench nowcast --name": "bench nowcast --model-name",
    "bench nowcast --backend": "bench nowcast --scorer",
    "bench-read": "bench read",
    "bench-fuzz": "bench fuzz",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: …)`` to an option's help, unless the help names its default already or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or action.required or default is None or default is False or default is argparse.SUPPRESS:
            return text
        if default == []:
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` with :class:`HelpFormatter` and one-line errors (exit status 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Refuse bad usage in one line on stderr; exit 2."""
        sys.stderr.write(f"{self.prog}: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def add_old_spelling(parser: argparse.ArgumentParser, old: str, new: str, **kwargs: Any) -> None:
    """Accept ``old`` as a hidden alias of the option ``new`` (same destination, no help line, no default of its own).

    ``kwargs`` are those of ``new`` that matter to parsing (``type``, ``choices``, ``action``).
    """
    dest = next(a.dest for a in parser._actions if new in a.option_strings)
    parser.add_argument(old, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)
