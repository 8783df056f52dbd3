"""How a pool's work is cut: units of a few photos, and single photos at the end of the run so
that the workers finish together."""

from __future__ import annotations

import pytest

from iffse_lib.stages import unit_size, work_units


def _photos(units):
    return [item for parts in units for unit in parts for item in unit]


@pytest.mark.parametrize("sizes,slots", [((64, 41), 2), ((64, 64, 3), 4), ((5,), 2), ((1,), 8), ((200,), 36)])
def test_every_photo_once_in_order_and_single_photos_at_the_end(sizes, slots):
    batches, start = [], 0
    for n in sizes:
        batches.append(list(range(start, start + n)))
        start += n
    size = unit_size(max(sizes), slots)
    units = work_units(batches, size, slots)
    assert [len(parts) > 0 for parts in units] == [True] * len(batches)
    assert [[item for unit in parts for item in unit] for parts in units] == batches  # never across batches
    assert _photos(units) == list(range(start))
    flat = [unit for parts in units for unit in parts]
    assert all(1 <= len(unit) <= size for unit in flat)
    tail = min(start, size * slots) if size > 1 else start
    assert all(len(unit) == 1 for unit in flat[-tail:])


def test_the_fixture_run_two_batches_on_two_cores():
    """105 photos in batches of 64 on 2 cores: units of 4, the last 8 photos one by one."""
    units = work_units([list(range(64)), list(range(64, 105))], unit_size(64, 2), 2)
    assert [len(u) for u in units[0]] == [4] * 16
    assert [len(u) for u in units[1]] == [4] * 8 + [1] * 9
