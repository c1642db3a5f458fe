"""Pseudo classes: k-means on item latent factors (Fang et al. 2015, section 2.2)."""
