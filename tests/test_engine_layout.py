"""dynsim.engine.layout: rectangular chunks that cover the grid, blocks evened out."""
import numpy as np
import pytest

from dynsim.engine.layout import make_layout


def test_layout_chunks_are_rectangular_and_cover_the_grid():
    lay = make_layout((3, 4, 5), 9, n_devices=2, block_size=4096)
    seen = np.zeros((3, 4, 5), int)
    for i in range(lay.n_chunks):
        start, n, region = lay.chunk(i)
        seen[region] += 1
        idx = np.arange(start, start + n)
        np.testing.assert_array_equal(np.ravel_multi_index(np.nonzero(np.ones((3, 4, 5))), (3, 4, 5))[idx], idx)
        assert int(np.prod([s.stop - s.start for s in region])) == n
    assert np.all(seen == 1)


@pytest.mark.parametrize("block_size", [1 << 18, 65536, 4096, 8])
def test_layout_blocks_are_evened_out(block_size):
    """Blocks split a device's points evenly: padding under 8 points per block, never a whole block."""
    lay = make_layout((37, 3, 2362), 10**6, n_devices=2, block_size=block_size)
    raw = -(-37 * 3 * 2362 // 2)
    assert lay.block_points % 8 == 0 and lay.block_points <= max(block_size, 8)
    assert lay.local == lay.n_blocks * lay.block_points
    assert raw <= lay.local < raw + 8 * lay.n_blocks
