"""slotcov: Slot Attention with covariance / cosine bottleneck regularisers, reproduced."""

__version__ = "0.1.0"
