"""Configuration: YAML files are the single source of every hyper-parameter.

``load_config(path, schema)`` merges the YAML into a dataclass schema and ``instantiate(node)`` builds
``node.target`` with ``node.params``; an unknown key, a wrong type or an unexpected parameter raises
:class:`ConfigError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Type

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


@dataclass
class ObjectNode:
    """``{target, params}``: built by :func:`instantiate` (params checked against the target's signature)."""

    target: str = MISSING
    params: Dict[str, Any] = field(default_factory=dict)


@dataclass
class WeightsNode(ObjectNode):
    """An object node with the weights to load, if any (None: the caller's initialisation)."""

    ckpt_path: Optional[str] = None


@dataclass
class RequiredWeightsNode(ObjectNode):
    """An object node whose weights must be given (a trained network loaded as a frozen part)."""

    ckpt_path: str = MISSING


class ConfigError(ValueError):
    """A configuration file that cannot be used as written."""


# YAML 1.1 reads these words as booleans; in a ``key=value`` override they are kept as the word, so that
# ``train.amp=no`` means the string 'no' (a boolean key still accepts it: OmegaConf converts 'no' to False).
WORD_BOOLEANS = frozenset({"yes", "no", "on", "off"})


def parse_override(item: str) -> DictConfig:
    """One ``key=value`` override as a config (the value read as YAML, except the words of
    :data:`WORD_BOOLEANS`, which stay strings); ConfigError naming the override if it does not parse."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}' is not of the form key=value")
    if value.strip().lower() in WORD_BOOLEANS:
        item = f"{key}='{value.strip()}'"
    try:
        return OmegaConf.from_dotlist([item])
    except yaml.YAMLError as err:
        raise ConfigError(f"override '{item}': not valid YAML: {_yaml_problem(err, position=False)}") from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"override '{item}': {first_line(err)}") from None


def load_config(path: str | Path, schema: Optional[Type] = None, overrides: Optional[list] = None) -> DictConfig:
    """Read ``path`` (YAML), apply ``overrides`` (``["a.b=1", ...]``, :func:`parse_override`) and validate
    against ``schema``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(err)}") from None
    parsed = [parse_override(item) for item in overrides or []]
    try:
        cfg = OmegaConf.merge(cfg, *parsed)
        if schema is not None:
            cfg = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        where = f" (key '{key}')" if key else ""
        raise ConfigError(f"{path}: invalid configuration{where}: {first_line(err)}") from None
    return cfg


def override_hint(key: str) -> str:
    """How a training script's command line gives ``key``: "give it as data.train.source=FOLDER (a key=value
    argument of the command)"; the placeholder is FOLDER for data sources, FILE for weights, else VALUE."""
    leaf = key.rsplit(".", 1)[-1]
    data_source = key.startswith("data.") and leaf == "source"
    placeholder = "FILE" if leaf == "ckpt_path" else "FOLDER" if data_source else "VALUE"
    return f"give it as {key}={placeholder} (a key=value argument of the command)"


def require_keys(cfg: DictConfig, path: str | Path) -> None:
    """ConfigError naming each key of ``cfg`` still ``???`` (MISSING) and how to give it (:func:`override_hint`)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{path}: " + "; ".join(f"missing {key}: {override_hint(key)}" for key in missing))


def get_obj_from_str(dotted: str) -> Any:
    """Import ``package.module.Name`` and return ``Name``."""
    module_name, _, attr = dotted.rpartition(".")
    if not module_name:
        raise ConfigError(f"target '{dotted}' is not a dotted path 'module.Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"target '{dotted}': cannot import module '{module_name}' ({err})") from None
    if not hasattr(module, attr):
        raise ConfigError(f"target '{dotted}': module '{module_name}' has no attribute '{attr}'")
    return getattr(module, attr)


def instantiate(node: Any, **extra: Any) -> Any:
    """Build ``node.target(**node.params, **extra)``; reject parameter names the target does not take."""
    if node is None or "target" not in node:
        raise ConfigError("a model/object section needs a 'target' key (dotted class path)")
    factory = get_obj_from_str(node["target"])
    params = dict(node.get("params", None) or {})
    if isinstance(node, DictConfig):
        params = OmegaConf.to_container(node.get("params", None) or OmegaConf.create({}), resolve=True)
    params.update(extra)
    _check_params(factory, params, node["target"])
    return factory(**params)


def _check_params(factory: Any, params: dict, target: str) -> None:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return
    unknown = sorted(set(params) - set(sig.parameters))
    if unknown:
        allowed = ", ".join(n for n in sig.parameters if n != "self")
        raise ConfigError(f"{target}: unknown parameter(s) {unknown}; it accepts: {allowed}")


def to_dict(cfg: Any) -> dict:
    """Plain-python copy of a config (for checkpoints and logs; enums as their names)."""
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def _yaml_problem(err: yaml.YAMLError, position: bool = True) -> str:
    """A YAML parse error in one line: the problem and (``position``) where it is, line and column."""
    problem = getattr(err, "problem", None) or first_line(err)
    mark = getattr(err, "problem_mark", None)
    if position and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return problem


def first_line(err: BaseException) -> str:
    """The first non-empty line of an error message, or the error type without one."""
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
