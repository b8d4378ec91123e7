"""rlhf-desktop: the whole RLHF loop on one workstation."""

__version__ = "0.1.0"
