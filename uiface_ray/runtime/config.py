"""PipelineConfig: the config of ``jobs/pipeline.py`` (imports no Ray, pyarrow or torch)."""

from __future__ import annotations

import copy
import typing
from typing import Annotated, Any, Literal

from pydantic import Field, create_model

from uiface_ray.config import Config, RayConfig, StorageConfig
from uiface_ray.data.config import PrepareFacesConfig
from uiface_ray.encoders.config import EmbedConfig, EncoderConfig
from uiface_ray.evaluate.config import MetricsConfig
from uiface_ray.export.config import ExportConfig
from uiface_ray.identities.config import MakeIdentitiesConfig
from uiface_ray.sample.config import SamplerConfig
from uiface_ray.synth.config import SynthesisConfig
from uiface_ray.train.config import TrainConfig
from uiface_ray.urls import OptionalUrl, Url, UrlField

__all__ = ["LFW_IMAGES", "LFW_PEOPLE", "PipelineConfig", "StageOverrides", "partial_config"]

LFW_IMAGES = "../shared/data/lfw112/images"
LFW_PEOPLE = "../shared/data/lfw112/peopleDevTrain.txt"

SamplerMode = SamplerConfig.model_fields["mode"].annotation  # the sampler's modes, as SamplerConfig lists them


def partial_config(cls: type[Config]) -> type[Config]:
    """``cls`` with every field optional and unset unless given (nested configs partial too): the
    keys a ``stages.<stage>`` section may set, each checked against its field's type when the
    pipeline's config is loaded, so a misspelt key is an error before any stage runs.  The stage's
    own cross-field checks run when its full config is built (:func:`pipeline.stage_config`)."""
    fields: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        sub = info.annotation
        sub = next((a for a in (sub, *typing.get_args(sub)) if isinstance(a, type) and issubclass(a, Config)), None)
        field = copy.copy(info)  # description, constraints, Url marker, secret flag
        field.default, field.default_factory = None, None
        if sub is not None and info.annotation in (sub, sub | None):
            fields[name] = (partial_config(sub) | None, field)
        else:
            fields[name] = (info.annotation | None, field)
    doc = f"Overrides of {cls.__name__}: any of its keys."
    return create_model(f"{cls.__name__}Overrides", __base__=Config, __module__=__name__, __doc__=doc, **fields)


PrepareFacesOverrides = partial_config(PrepareFacesConfig)
EmbedOverrides = partial_config(EmbedConfig)
TrainOverrides = partial_config(TrainConfig)
MakeIdentitiesOverrides = partial_config(MakeIdentitiesConfig)
SynthesisOverrides = partial_config(SynthesisConfig)
ExportOverrides = partial_config(ExportConfig)
MetricsOverrides = partial_config(MetricsConfig)


class StageOverrides(Config):
    """Per-stage overrides, as the stage's own YAML keys (see each job's --help); checked at load."""

    prepare_faces: PrepareFacesOverrides = Field(
        default_factory=PrepareFacesOverrides, description="Overrides for jobs/prepare_faces.py."
    )
    embed: EmbedOverrides = Field(default_factory=EmbedOverrides, description="Overrides for jobs/embed.py.")
    train_diffusion: TrainOverrides = Field(
        default_factory=TrainOverrides, description="Overrides for jobs/train_diffusion.py."
    )
    make_identities: MakeIdentitiesOverrides = Field(
        default_factory=MakeIdentitiesOverrides, description="Overrides for jobs/make_identities.py."
    )
    synthesize: SynthesisOverrides = Field(
        default_factory=SynthesisOverrides, description="Overrides for jobs/synthesize.py."
    )
    export: ExportOverrides = Field(default_factory=ExportOverrides, description="Overrides for jobs/export.py.")
    metrics: MetricsOverrides = Field(default_factory=MetricsOverrides, description="Overrides for jobs/metrics.py.")


class PipelineConfig(Config):
    """Run every stage at small scale on one Ray (embedded unless an address is given)."""

    workdir: Url = Field("out/pipeline", description="Where every stage writes (local path or s3://).")
    faces_source: Url = Field(
        LFW_IMAGES,
        description="Real aligned faces: an image folder (one sub-folder per identity, any image type "
        "Pillow reads) or an insightface train.rec.",
    )
    people_file: Annotated[str | None, UrlField(keep=frozenset({"auto"}))] = Field(
        "auto",
        description="Restrict to these people (LFW list format); 'auto': LFW's DevTrain people when "
        "faces_source is the LFW folder, else every identity folder; null: every identity folder.",
    )
    min_images: int = Field(5, ge=1, description="Keep identities with at least this many images.")
    max_images_per_identity: int | None = Field(
        6, ge=1, description="Use at most this many images per identity (embedding time; empty: all)."
    )
    train_config: Url = Field(
        "configs/train_diffusion_pipeline.yaml", description="Base YAML of the generator's training."
    )
    generator: OptionalUrl = Field(
        None, description="Reuse this generator checkpoint (path or s3://) instead of training one."
    )
    generator_cache: Url = Field(
        ".cache/generators",
        description="Trained generators are kept here, keyed by training config and data, "
        "and reused (or resumed) by later runs.",
    )
    num_identities: int = Field(16, ge=1, description="Synthetic identities to make.")
    identity_similarity_threshold: float = Field(
        0.9,
        gt=-1,
        le=1,
        description="Keep a candidate identity only if its dlib cosine to every kept one is "
        "under this. Real LFW people: same person about 0.7, different about 0.0; a generator trained for "
        "minutes draws near-identical faces, hence the loose default here (use about 0.5 with a trained one).",
    )
    identity_leakage_threshold: float = Field(
        0.9, gt=-1, le=1, description="Reject a candidate whose dlib cosine to a training identity reaches this."
    )
    images_per_identity: int = Field(4, ge=1, description="Images per synthetic identity.")
    num_actors: int = Field(2, ge=1, description="Sampler actors for identities and synthesis.")
    num_inference_steps: int = Field(50, ge=1, description="DDIM steps of every sampling stage.")
    seed: int = Field(0, description="Job seed of identities and synthesis.")
    face_resolution: int = Field(
        112, ge=8, description="Side in pixels of the square face chips prepare_faces writes (LFW112: 112)."
    )
    encoder: EncoderConfig = Field(
        default_factory=EncoderConfig,
        description="The identity encoder of embed, make_identities and metrics (one embedding space for all three).",
    )
    candidates_per_task: int = Field(
        16, ge=1, description="make_identities: candidates one actor draws and embeds per task (one filter block)."
    )
    max_candidates_per_identity: int = Field(
        16,
        ge=1,
        description="make_identities: draw at most this many candidates per identity asked for "
        "(max_candidates = this x num_identities) before giving up.",
    )
    identities_per_shard: int = Field(2, ge=1, description="synthesize: identities per shard (one actor task).")
    synthesis_batch_size: int = Field(8, ge=1, description="synthesize: images per sampler call inside an actor.")
    sampler_mode: SamplerMode = Field(
        "uiface", description="synthesize: the sampler mode (see --stages.synthesize.sampler.mode)."
    )
    image_format: Literal["png", "jpeg"] = Field("png", description="synthesize: encoding of the images in the shards.")
    metrics_real_max_images: int = Field(
        500, ge=11, description="metrics: at most this many real faces for precision/recall (seeded sample)."
    )
    metrics_k: int = Field(
        3, ge=1, description="metrics: nearest-neighbour k of precision/recall (paper: 10; few images here)."
    )
    dry_run: bool = Field(
        False,
        description="Print what each stage would do (stages already complete are skipped, as a rerun "
        "skips them) and an estimate of each with its basis, measured by running the stages at a small "
        "probe size in a temporary folder (removed after), then exit without writing anything.",
    )
    estimate: bool = Field(
        True,
        description="With dry_run: estimate each stage's time from a probe of its real work (the stages run "
        "at a small size in a temporary folder, about as long as a toy run); false: print only the plan.",
    )
    stages: StageOverrides = Field(default_factory=StageOverrides, description="Per-stage overrides.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Where Ray runs.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Object storage access.")
