"""Packed training with stacked networks: the pack's compatible networks as one computation (GPU engine).

:class:`StackedDenoising` is :class:`numnet.tasks.packed.PackedDenoising` (one Lightning loop; each network
with its own minibatch order, Adam state, validation, best epoch, early stop and failure) whose two-step
networks of one class and channel count (activations and normalisation rules may differ) train as one
:class:`numnet.nn.stacked.StackedTwoStep`: one forward and backward pass for all of them per minibatch, on
minibatches gathered on the device by a ``(M, B)`` index tensor (the networks' own orders, drawn as the
per-network engine draws them and uploaded once per epoch), with one Adam step over the stacked parameters.
The member networks' parameters are views of their slices of the stack, so that validation, the best
weights, the run folders and the resume checkpoint see the current weights without copies; a network that
is done leaves the stack (its parameters become its own) and is masked out of the summed loss. Training
losses stay on the device until the end of the epoch (one read per stack per epoch). Networks that do not
stack (ResNet, the implicit network) train as in the packed engine.
"""
from __future__ import annotations

import torch
from torch import nn

from numnet.nn.stacked import StackedTwoStep, stack_key
from numnet.tasks.packed import PackedDenoising

__all__ = ["StackedDenoising"]


class StackedDenoising(PackedDenoising):
    """:class:`PackedDenoising` with its compatible networks stacked (same arguments); ``cuda_graph``: on a GPU,
    record the step of full minibatches once as a CUDA graph and replay it (the loose networks, if any
    still train, keep every step eager)."""

    def __init__(self, tasks, train, batch_size, seeds, lr, steps_per_batch=1, on_done=None, skip=frozenset(),
                 cuda_graph: bool = True) -> None:
        super().__init__(tasks, train, batch_size, seeds, lr, steps_per_batch, on_done, skip)
        groups: dict[tuple, list[int]] = {}
        self.loose: list[int] = []
        for i, t in enumerate(tasks):
            key = stack_key(t.model)
            if key is None:
                self.loose.append(i)
            else:
                groups.setdefault(key, []).append(i)
        self.members = list(groups.values())
        self.stacks = nn.ModuleList(StackedTwoStep([tasks[i].model for i in g]) for g in self.members)
        #: network -> (its stack, its place in it)
        self.place = {m: (s, i) for s, g in enumerate(self.members) for i, m in enumerate(g)}
        self._stack_perm: list[torch.Tensor] = []
        self._stack_acc: list[torch.Tensor | None] = [None] * len(self.members)
        #: on a GPU, capture the step once as a CUDA graph and replay it (``trainer.cuda_graph``)
        self.cuda_graph = bool(cuda_graph)
        self._graph: CapturedStep | None = None
        self._warm = 0

    def _loose_active(self) -> list[int]:
        """The networks outside the stacks that still train."""
        return [m for m in self.loose if m in self.active]

    def _masks(self) -> list[torch.Tensor]:
        return [torch.tensor([m in self.active for m in g], device=self.device) for g in self.members]

    def configure_optimizers(self):
        for s, g in zip(self.stacks, self.members):
            models = [self.tasks[m].model for m in g]
            s.load_from(models)  # the members hold the restored weights (a resumed pack) or the initial ones
            s.alias(models)
        for m in self.place:
            if m not in self.active:
                StackedTwoStep.release(self.tasks[m].model)
        self.mask = self._masks()
        groups = [{"params": list(s.parameters()), "network": None} for s in self.stacks]
        groups += [{"params": list(self.tasks[m].model.parameters()), "network": m} for m in self._loose_active()]
        cuda = self.device.type == "cuda"
        return torch.optim.Adam(groups, lr=self.lr, fused=True, capturable=cuda)

    def on_train_start(self) -> None:
        self.noisy, self.clean = self.noisy.to(self.device), self.clean.to(self.device)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        n = self.noisy.shape[0]
        identity = torch.arange(n)
        self._stack_perm = [torch.stack([self._perm.get(m, identity) for m in g]).to(self.device, non_blocking=True)
                            for g in self.members]

    def training_step(self, chunk, batch_idx):
        opt = self.optimizers(use_pl_optimizer=False)
        start, stop = int(chunk) * self.chunk, min((int(chunk) + 1) * self.chunk, self.noisy.shape[0])
        for lo in range(start, stop, self.batch_size):
            hi = min(lo + self.batch_size, stop)
            idx = [p[:, lo:hi] for p in self._stack_perm]
            graphable = (self.cuda_graph and self.device.type == "cuda" and hi - lo == self.batch_size
                         and not self._loose_active())
            if graphable and self._graph is not None:
                losses = self._graph(idx)
            elif graphable:  # eager steps on a side stream before the capture, as CUDA graphs want
                losses = on_side_stream(lambda: step_stacks(self.stacks, self.mask, self.noisy, self.clean, idx, opt))
                self._warm += 1
                if self._warm >= 3:
                    try:
                        self._graph = CapturedStep(self.stacks, self.mask, self.noisy, self.clean, idx, opt)
                    except Exception as exc:  # noqa: BLE001 - the eager step is always correct
                        print(f"[numnet] CUDA graph capture failed ({type(exc).__name__}: {exc}); the steps stay eager",
                              flush=True)
                        self.cuda_graph = False
            else:
                losses = step_stacks(self.stacks, self.mask, self.noisy, self.clean, idx, opt,
                                     before_step=lambda: self._network_steps(self._loose_active(), lo, hi))
            for s, v in enumerate(losses):
                part = v * (hi - lo)
                self._stack_acc[s] = part if self._stack_acc[s] is None else self._stack_acc[s] + part

    def on_train_epoch_end(self) -> None:
        n = self.noisy.shape[0]
        for s, g in enumerate(self.members):
            if self._stack_acc[s] is None:
                continue
            sums = self._stack_acc[s].tolist()  # the epoch's one read of the stack's losses
            self._stack_acc[s] = None
            for m, total in zip(g, sums):
                if m in self.active:
                    self._acc[m] = [total, n]
        super().on_train_epoch_end()

    def _retire(self, m: int) -> None:
        if m not in self.place:
            super()._retire(m)
            return
        self.active.remove(m)
        s, i = self.place[m]
        StackedTwoStep.release(self.tasks[m].model)
        self.mask[s][i] = False  # in place: a captured step reads this tensor


def step_stacks(stacks, masks: list[torch.Tensor], noisy: torch.Tensor, clean: torch.Tensor, idx: list[torch.Tensor],
                opt: torch.optim.Optimizer, before_step=None) -> list[torch.Tensor]:
    """One Adam step of every stacked network on its minibatch (``idx[s]``: ``(M, B)`` indices into ``noisy`` and
    ``clean`` for stack ``s``; ``masks[s]``: which of its networks count): per stack the summed losses'
    backward pass, then ``before_step()`` (other gradients), then ``opt.step()``. Returns each stack's
    per-network losses (on the device)."""
    out = []
    for stack, mask, i in zip(stacks, masks, idx):
        stack.zero_grad(set_to_none=True)
        losses = stack.losses(noisy[i], clean[i])
        torch.where(mask, losses, torch.zeros_like(losses)).sum().backward()
        out.append(losses.detach())
    if before_step is not None:
        before_step()
    opt.step()
    return out


def on_side_stream(fn):
    """``fn()`` on a side CUDA stream, ordered after and before the current stream's work."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = fn()
    torch.cuda.current_stream().wait_stream(side)
    return out


class CapturedStep:
    """:func:`step_stacks` recorded once as a CUDA graph (the optimizer needs ``capturable=True``; run a few
    eager steps on a side stream first): calling it with new indices copies them into the static index
    tensors and replays the whole step, forward, backward and Adam, as one launch."""

    def __init__(self, stacks, masks, noisy, clean, idx: list[torch.Tensor], opt) -> None:
        self.static = [i.clone() for i in idx]
        for stack in stacks:
            stack.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.losses = step_stacks(stacks, masks, noisy, clean, self.static, opt)

    def __call__(self, idx: list[torch.Tensor]) -> list[torch.Tensor]:
        for static, i in zip(self.static, idx):
            static.copy_(i)
        self.graph.replay()
        return [v.clone() for v in self.losses]
