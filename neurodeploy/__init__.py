"""neurodeploy: compile spiking neural networks for Loihi-style chips, simulate them bit-exactly
and fast, and report what the deployment costs."""

__version__ = "0.1.0"
