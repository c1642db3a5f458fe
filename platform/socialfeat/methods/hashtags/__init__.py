"""User-specific hashtag prediction (Veit et al., CVPR 2018): its graph of stages is in method.py."""
