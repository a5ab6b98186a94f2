"""What every training stage (diffusion: :mod:`uiface_ray.train`; face recognition: :mod:`uiface_ray.fr`)
shares: how a worker reaches the others, the weight average, the learning-rate schedules."""
