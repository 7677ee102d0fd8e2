"""``GTX_*`` variables that look like settings but that the settings would never read.

pydantic-settings refuses an unknown field of a known section (``GTX_AGGREGATOR__TUA``), but
reads nothing from an unknown section (``GTX_AGGREGATR__TAU``) or from a single underscore
(``GTX_REDIS_URL``): the command ran on the defaults. Other ``GTX_*`` names (``GTX_CONFIG``,
``GTX_MODEL_DIR``, the tests' own) are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from gtx_stream.config import ConfigError, Settings


def _sections() -> dict[str, frozenset[str]]:
    """Each section of the settings and its fields (``labelers`` is one JSON list)."""
    out = {}
    for name, info in Settings.model_fields.items():
        fields = getattr(info.annotation, "model_fields", None)
        if fields is not None:
            out[name] = frozenset(fields)
    return out


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError (one line, naming the variable) for a misspelt settings variable."""
    sections = _sections()
    for name in sorted(os.environ if environ is None else environ):
        upper = name.upper()
        if not upper.startswith("GTX_"):
            continue
        rest = upper[4:].lower()
        section, sep, field = rest.partition("__")
        if sep:
            if section not in sections and section != "labelers":
                known = ", ".join(sorted(sections))
                raise ConfigError(
                    f"config error: {name}: no settings section {section!r} (sections: {known})"
                )
            continue
        for sec, fields in sections.items():
            if rest.startswith(sec + "_") and rest[len(sec) + 1 :] in fields:
                right = f"GTX_{sec.upper()}__{rest[len(sec) + 1 :].upper()}"
                raise ConfigError(
                    f"config error: {name} is not read (one underscore): did you mean {right}?"
                )
