"""Weakly supervised word prediction (Joulin et al., ECCV 2016): its graph of stages is in method.py."""
