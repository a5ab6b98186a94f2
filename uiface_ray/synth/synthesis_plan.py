"""The plan of one synthesis job, made without Ray and without printing: every input checked, the shards
planned, and (under the output's lease) what is left to do.

    plan = plan_synthesis(cfg, dtype="float32", device="cpu")   # reads the model's marker and the table
    work = plan.resume()                                        # reads the manifest, journal, one listing
    writer = plan.writer(work)                                  # the manifest's one owner from here on

Nothing is written here.  The model is known by its bundle's marker (``uiface.json``: its weights
hash and embedding size), never loaded: the actors load it and check that hash.  The config is
resolved once (local paths made absolute, storage settings filled from ``AWS_*``, the actors' dtype
made concrete) and handed to the actors as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from uiface_ray import storage
from uiface_ray.identities.table import IdentityTable, read_identity_table
from uiface_ray.model.bundle import ModelLoadError, read_model_summary
from uiface_ray.synth.config import SynthesisConfig
from uiface_ray.synth.errors import SynthesisInputError
from uiface_ray.synth.journal import ManifestWriter
from uiface_ray.synth.manifest import Manifest
from uiface_ray.synth.plan import ShardSpec, plan_shards
from uiface_ray.synth.resume import ResumeState, resume_state
from uiface_ray.storage.fs import check_writable
from uiface_ray.synth.retry import write_with_retries

__all__ = ["SynthesisPlan", "plan_synthesis"]


@dataclass(frozen=True)
class SynthesisPlan:
    cfg: SynthesisConfig  # resolved: absolute paths, storage settings, the actors' concrete dtype
    model_hash: str  # from the model's marker; every actor checks the weights it loads against it
    table: IdentityTable
    shards: list[ShardSpec]
    generation: dict  # what decides the bytes (recorded in the manifest, compared on resume)

    @property
    def num_images(self) -> int:
        return len(self.table) * self.cfg.images_per_identity

    def resume(self) -> ResumeState:
        """What is already done under the output (verified) and what is left (read only)."""
        cfg = self.cfg
        return resume_state(
            cfg.output, self.generation, self.shards, self.table.identity_ids, cfg.storage, cfg.verify_hashes
        )

    def writer(self, state: ResumeState) -> ManifestWriter:
        """The manifest's writer, holding the records of ``state.done``; it owns the manifest from here on."""
        cfg = self.cfg
        manifest = Manifest(
            self.generation,
            len(self.table),
            cfg.images_per_identity,
            len(self.shards),
            shards=sorted(state.done.values(), key=lambda r: r.index),
            job_config=cfg.recorded(),
            journal_upto=state.journal_upto,
        )

        def write(url: str, data: bytes) -> None:
            write_with_retries(
                lambda: storage.write_bytes_atomic(url, data, cfg.storage),
                url,
                attempts=cfg.write_attempts,
                backoff_s=cfg.write_backoff_s,
            )

        return ManifestWriter(cfg.output, manifest, cfg.storage, write=write)

    def resume_line(self, state: ResumeState) -> str | None:
        """What a resume skips, in one line (None for a fresh output)."""
        if state.fresh:
            return None
        images = sum(r.rows for r in state.done.values())
        adopted = (
            f"; {len(state.adopted)} adopted: written by an earlier run that stopped before recording them, "
            "read back and verified"
            if state.adopted
            else ""
        )
        redo = f" ({len(state.redo)} listed but missing or damaged: rerun)" if state.redo else ""
        return (
            f"resuming {self.cfg.output}: {len(state.done)} of {len(self.shards)} shards already done "
            f"({images} images{adopted}), skipped; {len(state.todo)} to run{redo}"
        )


def plan_synthesis(cfg: SynthesisConfig, dtype: str, device: str) -> SynthesisPlan:
    """Resolve ``cfg`` and check every input: the model's marker, the identity table (its embedding
    size against the model's), that the output is writable.  ``dtype``/``device``: where the actors
    sample (decided by the runtime, which asks the cluster).  Writes nothing."""
    cfg = storage.resolve_urls(cfg)
    cfg = cfg.model_copy(update={"actors": cfg.actors.model_copy(update={"dtype": dtype})})
    try:
        model = read_model_summary(cfg.model, cfg.storage)
    except ModelLoadError as exc:
        raise SynthesisInputError(f"model: {exc}") from exc
    table = read_identity_table(cfg.identities, expected_dim=model.embedding_dim, storage_cfg=cfg.storage)
    try:
        check_writable(cfg.output, cfg.storage)
    except storage.StorageError as exc:
        raise SynthesisInputError(f"output {cfg.output} is not writable: {exc}") from exc
    generation = cfg.generation(model.weights_hash, table.sha256, dtype, device)
    shards = plan_shards(len(table), cfg.identities_per_shard, cfg.images_per_identity)
    return SynthesisPlan(cfg, model.weights_hash, table, shards, generation)
