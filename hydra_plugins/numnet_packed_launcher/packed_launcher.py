"""``hydra/launcher=packed``: a multirun's jobs trained in packs by :func:`numnet.packing.launch_packed`.

The sweeper defines the jobs as always (grid, overrides, ``hydra.sweep.dir`` and ``subdir``); this
launcher composes each job's configuration, then trains the compatible ones together instead of one
process each. Settings: ``hydra.launcher.pack_size`` (networks per pack) and ``hydra.launcher.n_jobs``
(packs trained at once, each in its own process). (No ``from __future__ import annotations`` here:
Hydra loads plugin modules without registering them, which dataclasses with string annotations need.)
"""
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig


@dataclass
class PackedLauncherConf:
    _target_: str = "hydra_plugins.numnet_packed_launcher.packed_launcher.PackedLauncher"
    #: networks trained together in one pack
    pack_size: int = 64
    #: packs trained at once (processes)
    n_jobs: int = 1


ConfigStore.instance().store(group="hydra/launcher", name="packed", node=PackedLauncherConf, provider="numnet")


class PackedLauncher(Launcher):
    def __init__(self, pack_size: int = 64, n_jobs: int = 1) -> None:
        super().__init__()
        self.pack_size = int(pack_size)
        self.n_jobs = int(n_jobs)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Any = None
        self.task_function: Any = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from numnet.packing import launch_packed

        return launch_packed(self.hydra_context, self.config, job_overrides, initial_job_idx, self.pack_size,
                             self.n_jobs)
