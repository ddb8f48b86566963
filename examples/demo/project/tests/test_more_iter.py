from more_iter import interleave_evenly


def test_spreads_items_evenly():
    assert list(interleave_evenly([[1, 2, 3, 4], ["a", "b"]])) == [1, "a", 2, 3, "b", 4]


def test_single_iterable_is_unchanged():
    assert list(interleave_evenly([range(3)])) == [0, 1, 2]


def test_empty_lists_are_skipped():
    assert list(interleave_evenly([[], [1, 2]])) == [1, 2]


def test_no_iterables_gives_an_empty_iterator():
    assert list(interleave_evenly([])) == []
