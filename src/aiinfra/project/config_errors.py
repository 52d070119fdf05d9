"""Config errors a person can act on: where the bad value came from, what it was, what is
allowed, and the closest valid key for a typo.

A setting comes from one of three places: the environment (``AIINFRA_<SECTION>__<FIELD>``),
the YAML profile (file and line), or an option of the command line (``--home``). Pydantic
reports a location inside the model; this module finds which of the three put it there.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

ENV_PREFIX = "AIINFRA_"
ENV_DELIMITER = "__"


class ConfigError(ValueError):
    """The configuration is invalid; the message names each problem and its source."""


def explain(
    exc: ValidationError,
    model: type[BaseModel],
    profile: Path | None,
    overridden: Iterable[str] = (),
) -> ConfigError:
    """One line per problem in ``exc`` (raised validating ``model``)."""
    lines = _yaml_lines(profile)
    problems = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join(loc)
        source = _source(loc, lines, profile, set(overridden))
        if error["type"] == "extra_forbidden":
            hint = _did_you_mean(loc[-1], _fields_at(model, loc[:-1]))
            problems.append(f"{source}: unknown setting {key!r}{hint}")
            continue
        value = error.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        problems.append(f"{source}: {key}{shown}: {_allowed(error)}")
    return ConfigError("\n".join(problems))


def unknown_env_settings(model: type[BaseModel], environ: dict[str, str] | None = None) -> None:
    """Raise for an ``AIINFRA_<SECTION>__<FIELD>`` variable that names no setting: the
    environment source would silently ignore it, and the run would use another value."""
    problems = []
    for name in sorted(environ if environ is not None else os.environ):
        if not name.startswith(ENV_PREFIX) or ENV_DELIMITER not in name:
            continue
        path = name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
        known: Sequence[str] = []
        for depth in range(len(path)):
            known = _fields_at(model, tuple(path[:depth]))
            if path[depth] not in known:
                hint = _did_you_mean(path[depth], known, env=(path[:depth], path[depth + 1 :]))
                problems.append(f"environment variable {name}: names no setting{hint}")
                break
    if problems:
        raise ConfigError("\n".join(problems))


def _source(loc: tuple[str, ...], lines: dict[tuple[str, ...], int], profile: Path | None,
            overridden: set[str]) -> str:  # fmt: skip
    env = ENV_PREFIX + ENV_DELIMITER.join(loc[:2]).upper()
    if loc and loc[0] in overridden:
        return f"option --{loc[0]}"
    for depth in range(len(loc), 0, -1):  # a nested value set as a whole from the environment
        name = ENV_PREFIX + ENV_DELIMITER.join(loc[:depth]).upper()
        if name in os.environ:
            return f"environment variable {name}={os.environ[name]}"
    for depth in range(len(loc), 0, -1):
        if loc[:depth] in lines:
            return f"{profile}:{lines[loc[:depth]]}"
    where = f" (not in {profile}; set it there or in {env})" if profile else ""
    return f"setting{where}" if loc else "profile"


def _allowed(error: Any) -> str:
    """Pydantic's message, which says what is allowed ("Input should be greater than 0")."""
    message = str(error["msg"])
    return "missing: it has no default, set it" if error["type"] == "missing" else message


def _fields_at(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """The setting names at ``loc`` inside ``model`` ([] where it is not a model)."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _model_of(fields[part].annotation)
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _model_of(annotation: Any) -> Any:
    """The BaseModel inside an annotation such as ``ModelConfig`` or ``ModelConfig | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _did_you_mean(
    word: str, known: Sequence[str], env: tuple[Sequence[str], Sequence[str]] | None = None
) -> str:
    """The closest known name; ``env``: the variable's parts before and after ``word``."""
    close = difflib.get_close_matches(word.lower(), known, n=1, cutoff=0.6)
    if not close:
        return f" (known: {', '.join(known)})" if known else ""
    if env is not None:
        before, after = env
        return (
            f"; did you mean {ENV_PREFIX}{ENV_DELIMITER.join([*before, close[0], *after]).upper()}?"
        )
    return f"; did you mean {close[0]!r}?"


def _yaml_lines(profile: Path | None) -> dict[tuple[str, ...], int]:
    """The line (1-based) of every key of a YAML profile, by its path of keys."""
    if profile is None or not profile.exists():
        return {}
    found: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = (*path, str(key.value))
                found[here] = key.start_mark.line + 1
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                found[(*path, str(index))] = item.start_mark.line + 1
                walk(item, (*path, str(index)))

    root = yaml.compose(profile.read_text())
    if root is not None:
        walk(root, ())
    return found
