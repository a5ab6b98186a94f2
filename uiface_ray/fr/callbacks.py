"""What the FR loop does beside the step, as small callbacks (arcface_torch's ``CallBackLogging`` and
``CallBackVerification``): each is called after every step with the loop's :class:`FRState` and
decides for itself whether it is its turn.  Only rank 0 verifies and logs; every rank checkpoints
(rank 0 hands the state, the others report their metrics)."""

from __future__ import annotations

import copy
import time

from uiface_ray.evaluate.pairs_verifier import CurvePoint, PairsVerifier
from uiface_ray.fr.schedule import progress
from uiface_ray.optim.context import WorkerContext

__all__ = ["CallbackCheckpoint", "CallbackLogging", "CallbackVerification"]


class CallbackVerification:
    """Score the verification pairs every ``every`` steps (0: only at the end), on rank 0; the curve
    goes into the state.  With a weight average, the average is scored (copied into a spare backbone)."""

    def __init__(self, verifier: PairsVerifier | None, every: int, ctx: WorkerContext, state) -> None:
        self.verifier = verifier if ctx.rank == 0 else None
        self.every, self.ctx = every, ctx
        self.scored = copy.deepcopy(state.inner.backbone) if self.verifier and state.ema is not None else None

    def score(self, state) -> None:
        if self.scored is not None:
            state.ema.copy_to(self.scored)
        res = self.verifier.score(self.scored if self.scored is not None else state.inner.backbone, self.ctx.device)
        state.curve.append(CurvePoint(state.step, round(state.elapsed(), 2), res.accuracy, res.accuracy_std))
        self.ctx.log(
            f"[train_fr] step {state.step}: {self.verifier.name} {100 * res.accuracy:.2f}% "
            f"+- {100 * res.accuracy_std:.2f} ({state.elapsed() / 60:.1f} min)"
        )

    def __call__(self, state) -> None:
        if self.verifier is not None and self.every and state.step % self.every == 0:
            self.score(state)

    def final(self, state) -> None:
        if self.verifier is not None and (not state.curve or state.curve[-1].step != state.step):
            self.score(state)


class CallbackLogging:
    """A progress line on rank 0 every ``every_s`` seconds: step, epoch, loss, lr, margin, images/s, ETA."""

    def __init__(self, ctx: WorkerContext, total_steps: int, steps_per_epoch: int, batch_size: int, every_s: float):
        self.ctx, self.total, self.spe, self.batch_size, self.every_s = (
            ctx,
            total_steps,
            steps_per_epoch,
            batch_size,
            every_s,
        )
        self.last = time.monotonic()

    def __call__(self, state, lr: float, budget_s: float | None) -> None:
        if self.ctx.rank != 0 or time.monotonic() - self.last < self.every_s:
            return
        self.last = time.monotonic()
        rate = state.images_per_s(self.batch_size, self.ctx.world_size)
        p = progress(state.step, self.total, state.elapsed(), budget_s)
        left = state.elapsed() * (1 - p) / max(p, 1e-9) / 60
        self.ctx.log(
            f"[train_fr] step {state.step}/{self.total} epoch {state.step / self.spe:.1f} loss {state.losses[-1]:.3f} "
            f"lr {lr:.4g} m {state.inner.head.m:.3f} {rate:.0f} img/s, {state.elapsed() / 60:.1f} min, "
            f"about {left:.1f} min left"
        )


class CallbackCheckpoint:
    """A checkpoint (``ctx.report``) every ``every`` steps and once at the end if the last step has none."""

    def __init__(self, ctx: WorkerContext, every: int, state) -> None:
        self.ctx, self.every, self.saved_at = ctx, every, state.step

    def save(self, state) -> None:
        metrics = {"step": state.step, "loss": state.losses[-1] if state.losses else None}
        self.ctx.report(metrics, state.checkpoint() if self.ctx.rank == 0 else None)
        self.saved_at = state.step

    def __call__(self, state) -> None:
        if state.step % self.every == 0:
            self.save(state)

    def final(self, state) -> None:
        if self.saved_at != state.step or not state.losses:
            self.save(state)
