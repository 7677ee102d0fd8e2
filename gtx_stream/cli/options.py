"""Options that several sub-commands share, spelled once so that they read the same everywhere."""

from __future__ import annotations

import argparse

CONFIG_METAVAR = "PATH"
CONFIG_HELP = "config file (default: $GTX_CONFIG, else ./config.toml when present)"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Given before the sub-command or after it (and after a sub-sub-command): ``gtx-stream
# status --log-level DEBUG``, ``gtx-stream labelers load FILE --config PATH``.
INHERITED = ("--log-level", "--config")


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar=CONFIG_METAVAR, help=CONFIG_HELP)


def add_log_level_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help=f"{', '.join(LOG_LEVELS)} (default INFO)",
    )


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: 0, 1, 2, ... (a negative count is a usage error, not 'no limit')."""
    return _whole_number(text, 0)


def positive_int(text: str) -> int:
    """An argparse type: 1, 2, 3, ... (a count of trials, epochs, labels that must not be 0)."""
    return _whole_number(text, 1)


def inherit_options(
    parser: argparse.ArgumentParser, inherited: tuple[argparse.Action, ...] = ()
) -> None:
    """Give every sub-command the :data:`INHERITED` options of the parsers above it.

    The copies default to ``SUPPRESS``: given after the sub-command they set the value, left
    out they keep the one given before it (or the top-level default). A sub-command without a
    description gets its one-line help as the description of its own ``--help``.
    """
    own = tuple(a for a in parser._actions if set(a.option_strings) & set(INHERITED))
    dests = {a.dest for a in own}
    passed = tuple(a for a in inherited if a.dest not in dests) + own
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, child in action.choices.items():
            if child.description is None:
                child.description = helps.get(name)
            for option in passed:
                for flag in option.option_strings:
                    if flag in child._option_string_actions:
                        # its own copy must not reset a value given before the sub-command
                        child._option_string_actions[flag].default = argparse.SUPPRESS
                if not set(option.option_strings) & set(child._option_string_actions):
                    child.add_argument(
                        *option.option_strings,
                        dest=option.dest,
                        type=option.type,
                        choices=option.choices,
                        metavar=option.metavar,
                        help=option.help,
                        default=argparse.SUPPRESS,
                    )
            inherit_options(child, passed)
