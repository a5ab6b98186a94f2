"""Face-recognition training stage: margin heads, augmentation, schedules, model and step, the loop.

The Ray Train driver is :mod:`uiface_ray.runtime.train_fr`; the verification it scores against lives in
:mod:`uiface_ray.evaluate.pairs_verifier`; the identity encoder IR-50 in :mod:`uiface_ray.encoders.iresnet`."""
