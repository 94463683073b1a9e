"""Packed training: several denoising networks of one sweep trained together by one Lightning loop.

A sweep of Figs. 5 and 6 is hundreds of small one-channel networks; trained one by one, each pays a
process start, Lightning's per-step and per-epoch machinery and an optimiser launch per step, which
for shallow networks cost more than their arithmetic. Here ``M`` networks (any architectures,
activations, depths, seeds, weight sharing and ``beta``, on one dataset) share one loop: every
minibatch step computes each network's loss and gradients (its fused CPU step where it has one,
autograd otherwise) and then takes one Adam step for all of them (one parameter group per network).

Each network keeps what it would have alone, so that the result equals training it by itself up to
rounding (the tests compare parameters after hundreds of steps):

* its own minibatch order: a shuffling generator seeded with its seed, drawn once per epoch, as
  :class:`numnet.data.signals.TensorBatches` does;
* its own Adam state (Adam is elementwise; a parameter group per network);
* its own validation history, best epoch, early stop (:meth:`DenoisingTask.end_epoch`) and failure: a
  network that stops or whose loss is not finite leaves the optimiser (its parameters no longer move)
  and ``on_done(index, task, error)`` is called at once, so that its results are written while the
  others train on.

The loop ends when every network is done or at ``max_epochs``. A Lightning checkpoint of the pack
(:class:`numnet.tasks.checkpoint.ResumeCheckpoint` with :attr:`PackedDenoising.shufflers`) holds every
network's weights, Adam state, validation record and shuffler and which networks still train; a pack
resumed from it continues as if uninterrupted.
"""
from __future__ import annotations

from typing import Callable

import pytorch_lightning as pl
import torch
from torch import nn

from numnet.tasks.denoising import DenoisingTask, loss_and_grads

__all__ = ["PackedDenoising"]


class _Chunks:
    """The loader of a packed epoch: the indices of its chunks of ``steps_per_batch`` minibatches."""

    def __init__(self, n: int, chunk: int) -> None:
        self.n = -(-n // chunk)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(range(self.n))


class _Shufflers:
    """The networks' shuffling generators, saved and restored by the resume checkpoint."""

    def __init__(self, gens: list[torch.Generator]) -> None:
        self.gens = gens

    def state_dict(self) -> dict:
        return {"generators": [g.get_state() for g in self.gens]}

    def load_state_dict(self, state: dict) -> None:
        for g, s in zip(self.gens, state["generators"]):
            g.set_state(s)


class PackedDenoising(pl.LightningModule):
    """``tasks`` (one :class:`DenoisingTask` per network, with its model, validation data, ``val_every`` and
    patience) trained on ``train = (noisy, clean)`` with minibatches of ``batch_size``; network ``m`` shuffles
    with ``seeds[m]``. ``on_done(m, task, error)`` is called when network ``m`` stops early, fails (``error``:
    the exception) or reaches the end."""

    def __init__(self, tasks: list[DenoisingTask], train: tuple[torch.Tensor, torch.Tensor], batch_size: int,
                 seeds: list[int], lr: float, steps_per_batch: int = 1,
                 on_done: Callable[[int, DenoisingTask, BaseException | None], None] | None = None,
                 skip: set[int] = frozenset()) -> None:
        super().__init__()
        if len(tasks) != len(seeds) or not tasks:
            raise ValueError(f"a pack needs one seed per network, got {len(tasks)} networks and {len(seeds)} seeds")
        self.tasks = nn.ModuleList(tasks)
        self.noisy, self.clean = train
        self.batch_size = int(batch_size)
        self.chunk = self.batch_size * int(steps_per_batch)
        self.lr = float(lr)
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        #: the generators as a resume checkpoint carries them (``ResumeCheckpoint(..., batches=shufflers)``)
        self.shufflers = _Shufflers(self.gens)
        self.on_done = on_done
        #: indices of the networks still training
        self.active = list(range(len(tasks)))
        #: networks already recorded (a resumed pack whose checkpoint predates their end): never trained again
        self.skip = set(skip)
        self._perm: dict[int, torch.Tensor] = {}
        self._acc = [[0.0, 0] for _ in tasks]
        self.automatic_optimization = False

    def loader(self) -> _Chunks:
        """What ``trainer.fit`` iterates over: one item per chunk of minibatches."""
        return _Chunks(self.noisy.shape[0], self.chunk)

    def configure_optimizers(self):
        groups = [{"params": list(self.tasks[m].model.parameters()), "network": m} for m in self.active]
        return torch.optim.Adam(groups, lr=self.lr, fused=True)

    # -- resume: which networks still train and their validation records (weights, Adam: Lightning's) -----
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        records = [{} for _ in self.tasks]
        for t, record in zip(self.tasks, records):  # each network's record as its own checkpoint holds it
            t.on_save_checkpoint(record)
        checkpoint["numnet_pack"] = {"active": list(self.active), "tasks": records}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["numnet_pack"]
        self.active = list(state["active"])
        for t, record in zip(self.tasks, state["tasks"]):
            # packs saved before the tasks' own hooks wrote their records hold the record's fields bare
            t.on_load_checkpoint(record if "numnet_task" in record else {"numnet_task": record})

    def on_train_epoch_start(self) -> None:
        for m in [m for m in self.active if m in self.skip]:  # recorded before an interruption: not trained again
            self._retire(m)
        n = self.noisy.shape[0]
        self._perm = {m: torch.randperm(n, generator=self.gens[m]) for m in self.active}

    def training_step(self, chunk, batch_idx):
        opt = self.optimizers(use_pl_optimizer=False)
        start, stop = int(chunk) * self.chunk, min((int(chunk) + 1) * self.chunk, self.noisy.shape[0])
        for lo in range(start, stop, self.batch_size):
            hi = min(lo + self.batch_size, stop)
            self._network_steps(list(self.active), lo, hi)
            opt.step()

    def _network_steps(self, networks: list[int], lo: int, hi: int) -> None:
        """The loss and gradients of each of ``networks`` on the minibatch ``[lo, hi)`` of its own order, added to
        its epoch's record; a network whose step raises is recorded failed and leaves the pack."""
        for m in networks:
            idx = self._perm[m][lo:hi].to(self.noisy.device)
            try:
                loss = loss_and_grads(self.tasks[m].model, self.noisy[idx], self.clean[idx])
            except Exception as exc:  # noqa: BLE001 - one network's failure must not stop the others
                self._finish(m, exc)
                continue
            acc = self._acc[m]
            acc[0] = acc[0] + loss * (hi - lo)
            acc[1] += hi - lo

    def on_train_epoch_end(self) -> None:
        for m in list(self.active):
            total, n = self._acc[m]
            self._acc[m] = [0.0, 0]
            if not n:
                continue
            try:
                stop = self.tasks[m].end_epoch(self.current_epoch, float(total / n))
            except Exception as exc:  # noqa: BLE001 - a diverged network is recorded failed; the others go on
                self._finish(m, exc)
                continue
            if stop:
                self._finish(m, None)
        if not self.active:
            self.trainer.should_stop = True

    def on_fit_end(self) -> None:
        for m in list(self.active):
            if m in self.skip:
                self._retire(m)
            else:
                self._finish(m, None)

    def _retire(self, m: int) -> None:
        """Network ``m`` leaves the loop and the optimiser: its parameters no longer move."""
        self.active.remove(m)
        opt = self.optimizers(use_pl_optimizer=False)
        opt.param_groups[:] = [g for g in opt.param_groups if g["network"] != m]
        for p in self.tasks[m].model.parameters():
            opt.state.pop(p, None)
            p.grad = None

    def _finish(self, m: int, error: BaseException | None) -> None:
        """Network ``m`` leaves the pack: out of the optimiser, its best weights restored, ``on_done`` called."""
        self._retire(m)
        task = self.tasks[m]
        if error is None and task._best_state is not None:
            task.model.load_state_dict(task._best_state)
        if self.on_done is not None:
            self.on_done(m, task, error)

