"""Config helpers: resolvers, the config folder, and validation before any compute starts."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from numnet.models import MODELS, build_model
from numnet.nn.activations import FLUXES

__all__ = ["CONFIG_DIR", "ConfigError", "validate", "register_resolvers", "choices", "compose_config", "model_kwargs",
           "check_sweep_args", "norm_tag", "sweep_grid_errors", "check_overrides"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """An invalid configuration value, reported before any compute starts."""


def norm_tag(rule: str | None) -> str:
    """Run-name suffix of a kernel normalisation rule: none for the default (``paper``), else ``-<rule>``."""
    return "" if rule in (None, "paper") else f"-{rule}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("shared_tag"):
        OmegaConf.register_new_resolver("shared_tag", lambda s: "shared" if str(s).lower() == "true" else "own")
    if not OmegaConf.has_resolver("norm_tag"):
        OmegaConf.register_new_resolver("norm_tag", norm_tag)


def compose_config(*overrides: str, return_hydra_config: bool = False, name: str = "train") -> DictConfig:
    """The config ``name`` (``train``, or ``inpaint`` for Fig. 9) with ``overrides``, composed outside a Hydra run
    (without the ``hydra`` node unless ``return_hydra_config``: the sweep grid and folder)."""
    from hydra import compose, initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def choices(group: str) -> list[str]:
    """Config names available in ``configs/<group>/``."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def fig9_folder(profile: str) -> str:
    """The folder below the results root that an inpainting profile's Fig. 9 goes to: its yaml's ``folder``
    (``fig9-long``, ``fig9-paper``), else ``fig9`` (the default quick profile, and smoke)."""
    path = CONFIG_DIR / "inpaint_profile" / f"{profile}.yaml"
    return str(OmegaConf.load(path).get("folder", "fig9")) if path.exists() else "fig9"


def _num(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key)


def model_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """Constructor arguments of the model from the ``model`` and ``activation`` groups."""
    kw = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "name"}
    kw.update(activation=cfg.activation.name, lam=float(cfg.activation.lam))
    return kw


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the key and the allowed range for any invalid value."""
    m, a, t, p = cfg.model, cfg.activation, cfg.task, cfg.profile
    if m.name not in MODELS:
        raise ConfigError(f"model={m.name!r} is unknown; choose one of {sorted(MODELS)}")
    if a.name not in FLUXES or a.name == "linear":
        raise ConfigError(f"activation={a.name!r} is unknown; choose one of {choices('activation')}")
    for key in ("profile.n_train", "profile.n_val", "profile.n_test",
                "profile.batch_size", "profile.max_epochs", "profile.val_every", "threads",
                "trainer.steps_per_batch"):
        v = _num(cfg, key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{key} must be an integer >= 1, got {v!r}")
    v = _num(cfg, "profile.patience")
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ConfigError(f"profile.patience must be an integer >= 0 (0: no early stop), got {v!r}")
    v = _num(cfg, "trainer.checkpoint_every_s")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
        raise ConfigError(f"trainer.checkpoint_every_s must be a number >= 0 (0: no resume checkpoint), got {v!r}")
    if not isinstance(m.shared, bool):
        raise ConfigError(f"model.shared must be true or false, got {m.shared!r}")
    if not a.lam > 0:
        raise ConfigError(f"activation.lam must be > 0 (contrast lambda), got {a.lam}")
    if not t.lr > 0:
        raise ConfigError(f"profile.lr (the Adam learning rate, task.lr) must be > 0, got {t.lr}")
    if not t.sigma >= 0:
        raise ConfigError(f"task.sigma must be >= 0, got {t.sigma}")
    if not (isinstance(t.length, int) and t.length >= 10):
        raise ConfigError(f"task.length must be an integer >= 10, got {t.length!r}")
    from numnet.data.signals import SHORT_LAST

    if OmegaConf.select(cfg, "task.short_last", default="reject") not in SHORT_LAST:
        raise ConfigError(f"task.short_last must be one of {list(SHORT_LAST)}, got {t.short_last!r}")
    try:  # the model constructors hold the architectural bounds (depth, channels, Eq. 14, Eq. 56, ...)
        build_model(m.name, **model_kwargs(cfg))
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None
    if cfg.logger.name not in choices("logger"):
        raise ConfigError(f"logger={cfg.logger.name!r} is unknown; choose one of {choices('logger')}")
    if cfg.trainer.accelerator == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("trainer=gpu but torch sees no CUDA device (install a CUDA build: make install TORCH_SPEC=...)")


def check_sweep_args(profile: str, profile_group: str, logger: str, jobs: int, threads: int, out: Path) -> None:
    """The checks every reproduce script makes before it starts: known profile and logger, at least one
    job and thread, a writable ``out/runs``."""
    if profile not in choices(profile_group):
        raise ConfigError(f"profile={profile!r} is unknown; choose one of {choices(profile_group)}")
    if logger not in choices("logger"):
        raise ConfigError(f"logger={logger!r} is unknown; choose one of {choices('logger')}")
    if jobs < 1 or threads < 1:
        raise ConfigError(f"--jobs and --threads must be >= 1, got {jobs} and {threads}")
    check_writable(Path(out) / "runs")


def check_writable(folder: str | os.PathLike) -> None:
    """Fail early when the output folder cannot be created or written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output folder {str(folder)!r} cannot be written: {exc.strerror or exc}") from None


def _groups() -> set[str]:
    """The config groups (folders of ``configs/``)."""
    return {p.name for p in CONFIG_DIR.iterdir() if p.is_dir()}


def _first_line(exc: Exception) -> str:
    """Hydra's and OmegaConf's multi-line messages cut to their first line."""
    return str(exc).strip().splitlines()[0]


def _own_overrides(overrides) -> list:
    """The parsed overrides that are not Hydra's own (``hydra...``: launchers, output folders) nor flags."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    own = [o for o in overrides if not o.startswith("-") and not o.lstrip("+~").startswith("hydra")]
    return OverridesParser.create().parse_overrides(own)


def fixed_overrides(extra: list[str]) -> list[str]:
    """The overrides of ``extra`` that set one value for every run of a sweep: not Hydra's own, not a sweep
    (``seed=0,1``). Raises Hydra's error for one that does not parse."""
    return [o.input_line for o in _own_overrides(extra) if not o.is_sweep_override()]


def sweep_grid_errors(experiment: str, profile: str, extra: list[str] = ()) -> list[str | None]:
    """Validate every grid point of ``experiment=<experiment>`` (its ``hydra.sweeper.params`` with the
    sweep overrides in ``extra``) under ``profile`` and the other ``extra`` overrides, before a sweep
    computes anything: one entry per point, ``None`` where it is valid, else the one-line reason.
    Overrides of Hydra itself (``hydra...``, launchers) do not change a run's validity and are left out."""
    import itertools
    import math

    import yaml
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    params = OmegaConf.select(OmegaConf.load(CONFIG_DIR / "experiment" / f"{experiment}.yaml"),
                              "hydra.sweeper.params", default=None) or {}
    axes = [[f"{k}={v}" for v in str(vals).split(",")] for k, vals in params.items()]
    fixed = []
    for o in _own_overrides(extra):
        if o.is_sweep_override():
            axes.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            fixed.append(o.input_line)
    # group choices (model=..., activation=...) need Hydra's composition; plain values are set on a copy
    groups = _groups()
    group_axes = [a for a in axes if a[0].split("=", 1)[0].lstrip("+~") in groups]
    value_axes = [a for a in axes if a not in group_axes]
    register_resolvers()
    errors = []
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for gpoint in itertools.product(*group_axes):
            try:
                base = compose("train", overrides=[f"experiment={experiment}", f"profile={profile}", *fixed, *gpoint])
            except (HydraException, OmegaConfBaseException) as exc:
                errors += [_first_line(exc)] * math.prod(len(a) for a in value_axes)
                continue
            for vpoint in itertools.product(*value_axes):
                try:
                    cfg = base.copy()
                    for item in vpoint:
                        key, _, value = item.partition("=")
                        OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
                    validate(cfg)
                    errors.append(None)
                except ConfigError as exc:
                    errors.append(str(exc))
                except OmegaConfBaseException as exc:
                    errors.append(_first_line(exc))
    return errors


def _flat_keys(cfg, prefix: str = "") -> list[str]:
    out = []
    for k in cfg.keys() if isinstance(cfg, DictConfig) else []:
        path = f"{prefix}{k}"
        out.append(path)
        try:
            child = cfg._get_node(k)
        except Exception:  # noqa: BLE001 - a node that cannot be read has no children to list
            continue
        if isinstance(child, DictConfig):
            out += _flat_keys(child, f"{path}.")
    return out


def check_overrides(overrides: list[str], config_name: str = "train") -> None:
    """Before Hydra starts: a :class:`ConfigError` of one line for an unknown option of a config group
    (naming the group's choices) or an unknown key (with the nearest existing key)."""
    import difflib

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        parsed = _own_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(_first_line(exc)) from None
    groups = _groups()
    first = []  # the group choices (the first of a sweep) to compose the config with
    for o in parsed:
        key = o.key_or_group
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        if key in groups and not o.is_delete():
            known = choices(key)
            for v in values:
                if v != "null" and v not in known:
                    raise ConfigError(f"{key}={v} is unknown; choose one of {known}")
            first.append(f"{o.get_key_element()}={values[0]}")
    register_resolvers()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=first)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_first_line(exc)) from None
    keys = _flat_keys(cfg)
    for o in parsed:
        key = o.key_or_group
        if key in groups or o.is_add() or o.is_delete() or key in keys:
            continue
        same_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
        near = same_leaf or difflib.get_close_matches(key, keys, n=1, cutoff=0.7)
        hint = f" (did you mean {' or '.join(near[:2])}?)" if near else ""
        raise ConfigError(f"unknown key {key}{hint}")
