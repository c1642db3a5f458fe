"""Evaluation: ranking metrics, behaviour-grounded retrieval, probes."""
