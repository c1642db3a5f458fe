"""Collaborative factorisation of the view log (Fang et al. 2015, section 2.1)."""
