"""The house rules of every ``ltgcast`` flag: help with its default, one-line refusals, hidden old spellings.

* :class:`Parser` is the parser class of the whole tree (subparsers inherit it):
  its help shows each option's default (:class:`HelpFormatter`), and a bad flag
  is refused in one line on stderr (``ltgcast run: unrecognized arguments:
  --nope (see ltgcast run --help)``) with exit status 2, before anything heavy
  is imported.
* The environment is read once, here at the edge: :func:`add_env_argument`
  makes an ``LTGCAST_*`` variable the flag's default (a flag on the command
  line still wins) and shows it in the help as ``[env: LTGCAST_…]``; settings
  objects and commands never read ``os.environ``.
* One spelling per concept across the subcommands: ``--model-base``,
  ``--model-name`` and ``--scorer``. The old spellings (:data:`RENAMED`) still
  work for one release, hidden from the help, through :func:`add_old_spelling`.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
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
        if default == [] or default == "":  # nothing to show: the help says what empty means
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` with :class:`HelpFormatter`, one-line errors (exit status 2), and ``env``.

    ``env`` is the environment its ``LTGCAST_*`` defaults come from (the process's own unless given); every
    subparser reads the same.
    """

    def __init__(self, *args: Any, env: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.env: Mapping[str, str] = os.environ if env is None else env

    def add_subparsers(self, **kwargs: Any) -> Any:
        """Subparsers of the same class, reading the same environment."""
        kwargs.setdefault("parser_class", functools.partial(type(self), env=self.env))
        return super().add_subparsers(**kwargs)

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


class FromEnv(str):
    """A flag's default that came from an environment variable (so that a bad value names the variable)."""

    variable: str

    def __new__(cls, value: str, variable: str) -> FromEnv:
        """``value``, remembering the ``variable`` it came from."""
        made = super().__new__(cls, value)
        made.variable = variable
        return made


def env_of(parser: argparse.ArgumentParser) -> Mapping[str, str]:
    """The environment a parser reads its defaults from: a :class:`Parser`'s own, else the process's."""
    return getattr(parser, "env", os.environ)


def add_env_argument(
    parser: argparse.ArgumentParser,
    flag: str,
    variables: str | Sequence[str],
    *,
    help: str,  # noqa: A002 -- argparse's own name
    default: Any = None,
    group: Any = None,
    type: Callable[[str], Any] | None = None,  # noqa: A002 -- argparse's own name
    **kwargs: Any,
) -> None:
    """Add ``flag``, whose default is the first non-empty of ``variables`` in the parser's environment, or ``default``.

    The help ends ``[env: VARIABLE]``. An environment value is parsed like one given on the command line (argparse
    applies ``type`` to string defaults), and a bad one is refused naming the variable. A flag given empty counts
    as not given (the variable or the default stands). ``group`` is the argument group to show it in.
    """
    names = (variables,) if isinstance(variables, str) else tuple(variables)
    env = env_of(parser)
    found = next(((name, env[name]) for name in names if env.get(name)), None)
    if found is not None:
        default = FromEnv(found[1], found[0])
    if type is not None:
        type = _naming_the_variable(type)
    if kwargs.get("action") == "append":
        kwargs["action"] = _AppendOverridingDefault
    elif "action" not in kwargs:
        kwargs["action"] = _StoreUnlessEmpty
    target = group if group is not None else parser
    shown = ", ".join(names)
    if type is not None:
        kwargs["type"] = type
    target.add_argument(flag, default=default, help=f"{help} [env: {shown}]", **kwargs)


def _naming_the_variable(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """``convert``, except that a value from the environment it refuses is reported with the variable's name."""

    @functools.wraps(convert)
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            if isinstance(text, FromEnv):
                msg = f"{text!r} from {text.variable}: {exc}"
                raise argparse.ArgumentTypeError(msg) from exc
            raise

    return parse


class _StoreUnlessEmpty(argparse._StoreAction):
    """A flag given empty (``--redis ""``) counts as not given: the variable, or the default, stands."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        if values == "":
            return
        super().__call__(parser, namespace, values, option_string)


class _AppendOverridingDefault(argparse._AppendAction):
    """``action="append"`` whose first use on the command line replaces the default (the environment's list)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        if getattr(namespace, self.dest, None) is self.default:
            setattr(namespace, self.dest, None)
        super().__call__(parser, namespace, values, option_string)
