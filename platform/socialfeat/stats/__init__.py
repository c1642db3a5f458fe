"""Pure statistics: neighbours and Jaccard, ranking metrics, bootstrap intervals and paired tests."""
