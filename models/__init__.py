"""SNN layers, model zoo, datasets, training and quantization-aware Loihi layers (installed as
``neurodeploy.models``).

* :mod:`~neurodeploy.models.layers` — surrogate spike, LIF/IF (both update orders, soft reset),
  BNTT, output accumulator, encoders, the :class:`SpikingNet` time loop;
* :mod:`~neurodeploy.models.zoo` — MLP, CNN, VGG5/9/11 and ResNet SNNs with their ANN twins,
  built from JSON-able configs;
* :mod:`~neurodeploy.models.checkpoint` — ``model.pt`` files loadable with
  ``torch.load(weights_only=True)``;
* :mod:`~neurodeploy.models.data` — offline datasets (digits, mnist5k, .npz, image folders);
* :mod:`~neurodeploy.models.train` — BPTT training;
* :mod:`~neurodeploy.models.loihi` — Loihi CUBA layers whose forward is hw_sim's arithmetic.

Submodules are imported on use (``from neurodeploy.models import zoo``).
"""
