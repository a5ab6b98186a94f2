"""Identity context encoder with a learnable empty context (paper section 3.1).

An identity embedding ``c`` (any dimension E: 128 from dlib, 512 from iresnet) is mapped to
``num_tokens`` context tokens of the UNet's ``cross_attention_dim``; these are the
``encoder_hidden_states`` of diffusers' cross-attention.  The learnable empty context ``c_e``
(``empty_context``) lives in the same E-dimensional identity space and goes through the same
projection, so ``empty_tokens`` are produced exactly the way identity tokens are.

With a single token the cross-attention softmax over keys is constant, so the attention maps the
UIFace sampler reads would carry no information; the default is 32 tokens as in the official
release.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["IdentityContextEncoder", "ProjectedContextEncoder", "context_encoder_from_config"]


class IdentityContextEncoder(nn.Module):
    """``forward(embeddings (B, E)) -> (B, num_tokens, cross_attention_dim)``."""

    def __init__(
        self, embedding_dim: int, num_tokens: int = 32, cross_attention_dim: int = 64, hidden_dim: int = 256
    ) -> None:
        super().__init__()
        if embedding_dim < 1 or num_tokens < 1 or cross_attention_dim < 1 or hidden_dim < 1:
            raise ValueError(
                f"IdentityContextEncoder sizes must be positive, got embedding_dim={embedding_dim}, "
                f"num_tokens={num_tokens}, cross_attention_dim={cross_attention_dim}, hidden_dim={hidden_dim}"
            )
        self.embedding_dim = embedding_dim
        self.num_tokens = num_tokens
        self.cross_attention_dim = cross_attention_dim
        self.hidden_dim = hidden_dim
        # c -> hidden (as the official release's 256-d projection) -> N tokens of dim D.
        self.proj_in = nn.Linear(embedding_dim, hidden_dim)
        self.act = nn.SiLU()
        self.proj_tokens = nn.Linear(hidden_dim, num_tokens * cross_attention_dim)
        self.token_norm = nn.LayerNorm(cross_attention_dim)
        # c_e: a unit vector in identity space, like the L2-normalised identity embeddings.
        init = torch.randn(embedding_dim)
        self.empty_context = nn.Parameter(init / init.norm())

    def config(self) -> dict:
        """The constructor arguments, JSON-able (saved next to the weights)."""
        return {
            "embedding_dim": self.embedding_dim,
            "num_tokens": self.num_tokens,
            "cross_attention_dim": self.cross_attention_dim,
            "hidden_dim": self.hidden_dim,
        }

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"identity embeddings must have shape (B, {self.embedding_dim}), got {tuple(embeddings.shape)}"
            )
        embeddings = embeddings.to(self.proj_in.weight.dtype)
        hidden = self.act(self.proj_in(embeddings))  # (B, hidden_dim)
        tokens = self.proj_tokens(hidden)  # (B, N * D)
        tokens = tokens.view(embeddings.shape[0], self.num_tokens, self.cross_attention_dim)  # (B, N, D)
        return self.token_norm(tokens)

    def empty_embeddings(self, batch_size: int) -> torch.Tensor:
        """``c_e`` repeated: (B, E)."""
        return self.empty_context.unsqueeze(0).expand(batch_size, -1)

    def empty_tokens(self, batch_size: int) -> torch.Tensor:
        """Context tokens of the empty context: (B, N, D), via the same projection as identities."""
        return self.forward(self.empty_embeddings(batch_size))


class ProjectedContextEncoder(nn.Module):
    """The official release's identity context: ``forward(embeddings (B, E)) -> (B, 1, D)``.

    One Linear map (the release's ``context_emb``, 512 -> 256) gives one D-dimensional context
    vector per identity; each attention block of :class:`~uiface_ray.release.unet.OfficialUNet`
    turns it into its own tokens.  The learnable empty context ``c_e`` (the release's
    ``empty_context_embedding``) lives in that D-dimensional space, not in identity space:
    ``empty_tokens`` returns it as is.
    """

    kind = "projected"

    def __init__(self, embedding_dim: int = 512, cross_attention_dim: int = 256) -> None:
        super().__init__()
        if embedding_dim < 1 or cross_attention_dim < 1:
            raise ValueError(
                f"ProjectedContextEncoder sizes must be positive, got embedding_dim={embedding_dim}, "
                f"cross_attention_dim={cross_attention_dim}"
            )
        self.embedding_dim = embedding_dim
        self.cross_attention_dim = cross_attention_dim
        self.num_tokens = 1
        self.proj_in = nn.Linear(embedding_dim, cross_attention_dim)
        self.empty_context = nn.Parameter(torch.randn(cross_attention_dim))

    def config(self) -> dict:
        """The constructor arguments and the kind, JSON-able (saved next to the weights)."""
        return {"kind": self.kind, "embedding_dim": self.embedding_dim, "cross_attention_dim": self.cross_attention_dim}

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"identity embeddings must have shape (B, {self.embedding_dim}), got {tuple(embeddings.shape)}"
            )
        return self.proj_in(embeddings.to(self.proj_in.weight.dtype))[:, None]  # (B, 1, D)

    def empty_tokens(self, batch_size: int) -> torch.Tensor:
        """``c_e`` repeated: (B, 1, D)."""
        return self.empty_context[None, None].expand(batch_size, 1, -1)


def context_encoder_from_config(config: dict) -> nn.Module:
    """Rebuild a context encoder from its saved :meth:`config` (no ``kind``: IdentityContextEncoder)."""
    config = dict(config)
    kind = config.pop("kind", "identity")
    if kind == ProjectedContextEncoder.kind:
        return ProjectedContextEncoder(**config)
    if kind != "identity":
        raise ValueError(f"unknown context encoder kind {kind!r} (expected 'identity' or 'projected')")
    return IdentityContextEncoder(**config)
