"""collcost fitting and prediction: α, β, γ from measured runs, and scaling models."""
__version__ = "0.1.0"
