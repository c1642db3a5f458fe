"""The stages every method shares: data, filter, split, factorisation, train, features, evaluate, cold start."""
