"""Loihi-style fixed-point simulator (installed as ``neurodeploy.hw_sim``)."""
