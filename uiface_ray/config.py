"""Stage configs: the frozen pydantic base and the settings every stage shares.

Every stage defines one ``Config`` subclass (frozen, ``extra="forbid"``) with a description on
every field, in the ``config.py`` of its package.  Loading one from YAML and ``--section.key=value``
overrides is :mod:`uiface_ray.cli`; running a job around it (one ``error:`` line, signals) is
:mod:`uiface_ray.runtime.job`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from uiface_ray.errors import InputError

__all__ = [
    "ActorPoolConfig",
    "Config",
    "ConfigError",
    "clip",
    "RayConfig",
    "StorageConfig",
    "StreamConfig",
]


class ConfigError(InputError, ValueError):
    """A config file or override is wrong; the message names the key and its source."""


class Config(BaseModel):
    """Base of every stage config: immutable, and unknown keys are errors."""

    # coerce_numbers_to_str: a key or bucket name made of digits, given on the command line, is
    # still the string the user typed; allow_inf_nan=False: no float setting means anything as
    # NaN or inf (an inf guidance_scale gave a dataset of black images), so every float field of
    # every stage refuses them
    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False)


SECRET = {"secret": True}  # json_schema_extra of a field whose value is never echoed back


class StorageConfig(Config):
    """How to reach object storage; empty fields fall back to the standard ``AWS_*`` variables.

    Jobs resolve it once at the driver (:func:`uiface_ray.storage.resolve_storage`) and hand the
    resolved config to every actor and Ray Train worker inside their arguments: an actor's
    environment and working directory are not the driver's, and Ray writes ``runtime_env``
    variables to its logs in plain text, so credentials never travel that way.
    """

    endpoint_url: str | None = Field(
        None, description="S3 endpoint URL (else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS)."
    )
    region: str | None = Field(None, description="S3 region (else AWS_REGION / AWS_DEFAULT_REGION).")
    access_key_id: str | None = Field(
        None, description="S3 access key (else AWS_ACCESS_KEY_ID or the instance profile)."
    )
    secret_access_key: str | None = Field(
        None,
        description="S3 secret key (else AWS_SECRET_ACCESS_KEY or the instance profile).",
        json_schema_extra=SECRET,
    )
    session_token: str | None = Field(
        None,
        description="S3 session token of temporary credentials (else AWS_SESSION_TOKEN).",
        json_schema_extra=SECRET,
    )


class RayConfig(Config):
    """Where the Ray driver connects."""

    address: str | None = Field(
        None,
        description="Ray cluster address ('auto', 'host:6379', 'ray://host:10001'); empty: RAY_ADDRESS if set "
        "(as under 'ray job submit'), else ('local' too) an embedded local Ray started in-process.",
    )
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs for an embedded local Ray (default: all of this machine's)."
    )
    num_gpus: int | None = Field(None, ge=0, description="GPUs for an embedded local Ray.")
    connect_timeout_s: float = Field(
        20.0, gt=0, le=3600, description="Seconds to wait for a cluster's address to answer before giving up."
    )


class ActorPoolConfig(Config):
    """The fixed pool of sampler actors (synthesis and make_identities)."""

    num_actors: int | None = Field(
        None, ge=1, description="Actors in the pool; empty: one per GPU of the cluster, else one per CPU slot."
    )
    use_gpu: bool | None = Field(
        None,
        description="true: one actor per GPU (num_gpus=1); false: CPU actors; empty: GPUs when the cluster has any.",
    )
    cpus_per_actor: int = Field(1, ge=1, description="num_cpus of each CPU actor (and torch threads in it).")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto",
        description="Sampling dtype of the actors. auto: what their device runs fastest (bfloat16 + channels_last "
        "on CPUs with AMX/AVX512-BF16 and CUDA sm_80+, float16 on sm_70/75, else float32; uiface_ray.precision). "
        "Part of what decides the bytes: the resolved dtype is recorded and a resume must keep it.",
    )
    tasks_per_actor: int = Field(2, ge=1, description="Shards queued per actor (2 keeps it busy while one is written).")
    max_restarts: int = Field(3, ge=0, description="Times Ray restarts a crashed actor in its own slot.")
    max_shard_attempts: int = Field(
        4, ge=1, description="Times one shard is dispatched before the job fails (an actor death counts)."
    )


#: Longest echo of a given value in an error message.
MAX_ECHO = 200


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (what error lines echo of a value)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class StreamConfig(Config):
    """How training data streams to each worker (uiface_ray.data.stream): pieces of row groups in a seeded
    order, rows shuffled within windows, decoded a few batches ahead of the step."""

    shuffle_window: int = Field(
        8192,
        ge=1,
        description="Rows shuffled together: each epoch permutes the pieces, groups consecutive ones into "
        "windows of at least this many rows and permutes the rows inside each window (mosaicml-streaming's "
        "shuffle block). Larger mixes better; a loader holds one window's encoded images (8192 x ~5-25 KB). "
        "At least the dataset's size: one full permutation per epoch.",
    )
    piece_rows: int = Field(
        1024,
        ge=1,
        description="Rows per piece, the unit the epoch's order permutes: a Parquet row group larger than this "
        "is read in pieces of this many rows (the face tables and shards this package writes have row groups of "
        "1024 rows; a piece of a larger row group costs the pages before it).",
    )
    prefetch_batches: int = Field(
        4, ge=1, description="Decoded (and augmented) batches kept ready ahead of the step, per training worker."
    )
    loader_cpus: float | None = Field(
        None,
        ge=0,
        description="CPUs each Ray Data loader task (read, decode, augment) reserves. Empty: 1 when the cluster has "
        "CPUs beyond the training workers' (a CPU node next to GPU nodes), else 0, so loaders run beside "
        "training workers that hold every CPU (the 2-CPU embedded Ray with 2 workers) instead of waiting.",
    )
    loader_concurrency: int = Field(
        2, ge=1, description="Ray Data loader tasks in flight per training worker (each reads one window)."
    )
