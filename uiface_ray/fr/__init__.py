"""Face-recognition training stage: margin heads, augmentation, schedules, model and step, the loop.

The Ray Train driver is :mod:`uiface_ray.runtime.train_fr`; the verification it scores against lives in
:mod:`uiface_ray.evaluate.fr_verify`; the identity encoder IR-50 in :mod:`uiface_ray.encoders.iresnet`."""
