"""One rule for keys a record does not know, whichever record reads them.

- A document a person wrote (the node's TOML configuration) refuses them: a misspelt key would
  otherwise leave a setting at its default without a word (``strict=True``: ``ConfigError``).
- A document a program wrote (a checkpoint's configuration and model description) ignores them
  with one WARNING naming them: a checkpoint written by a newer ugss still loads here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from ugss.errors import ConfigError

log = logging.getLogger(__name__)


def known_keys(
    cls: type, data: Mapping[str, Any], *, strict: bool, what: str = ""
) -> dict[str, Any]:
    """The entries of ``data`` that are fields of the dataclass ``cls``; the others refused
    (``strict``) or logged and dropped."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        label = what or cls.__name__
        if strict:
            raise ConfigError(f"unknown {label} keys: {', '.join(unknown)}")
        log.warning("ignoring unknown %s keys: %s", label, ", ".join(unknown))
    return {k: v for k, v in data.items() if k in names}
