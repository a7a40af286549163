"""SNN layers, model zoo and training (installed as ``neurodeploy.models``)."""
