"""Comparative deep learning for image recommendation (Lei et al., CVPR 2016): its graph of stages is in method.py."""
