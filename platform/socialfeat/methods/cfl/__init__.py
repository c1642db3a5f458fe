"""Collaborative feature learning (Fang et al., CVPR 2015): its graph of stages is in method.py."""
