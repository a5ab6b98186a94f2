"""One ``step_seed`` (uiface_ray.sample.seeds) for the diffusion and the FR training loops."""

from __future__ import annotations

import numpy as np

from uiface_ray.sample.seeds import step_seed

PINNED = [2968811710, 3702068382, 1943218105]  # computed with train/loop.py's step_seed before issue 14


def test_step_seed_keeps_the_training_loops_seeds():
    # train/loop.py's step_seed(seed, step, rank) before issue 14: SeedSequence([seed, step, rank])
    for seed, step, rank in [(0, 0, 0), (7, 123, 3), (2**40, 5, 1)]:
        assert step_seed(seed, step, rank) == int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])
    assert [step_seed(0, 0, 0), step_seed(7, 123, 3), step_seed(7, 3, 123)] == PINNED
    assert step_seed(1, 2, 3) != step_seed(1, 3, 2)  # step and rank are not interchangeable
