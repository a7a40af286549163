"""Target descriptions (installed as ``neurodeploy.targets``)."""
