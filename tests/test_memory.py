"""The process's peak RSS, reset per stage: what run.json records for each stage."""

import numpy as np

from socialfeat import memory


def test_the_peak_rises_with_an_allocation_and_restarts_from_the_current_rss_after_a_reset():
    assert memory.reset_peak_rss()
    before = memory.peak_rss_mib()
    block = np.ones(300 * 2**20, np.uint8)  # 300 MiB, every page touched
    peak_with_block = memory.peak_rss_mib()
    del block
    assert peak_with_block - before > 250
    assert memory.reset_peak_rss()
    assert memory.peak_rss_mib() < peak_with_block - 250  # the freed block no longer counts
