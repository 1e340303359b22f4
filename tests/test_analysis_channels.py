import pytest

from dinoreport.analysis import pick_channels


def test_same_channels_in_another_process():
    # The key is hashed with a fixed digest, not Python's per-process salted hash().
    import subprocess
    import sys

    code = "from dinoreport.analysis import pick_channels; print(list(pick_channels(384, 8, 0, 'm/C3')))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": "12345"}).stdout.strip()
    assert other == str(list(pick_channels(384, 8, 0, "m/C3")))


def test_changes_with_seed_and_key():
    base = pick_channels(384, 8, 0, "m/C3")
    assert pick_channels(384, 8, 1, "m/C3") != base
    assert pick_channels(384, 8, 0, "m/C4") != base


def test_distinct_sorted_in_range():
    for seed in range(20):
        ch = pick_channels(50, 10, seed, "k")
        assert len(set(ch)) == 10 and list(ch) == sorted(ch)
        assert all(0 <= c < 50 for c in ch) and all(isinstance(c, int) for c in ch)


def test_k_at_least_n_gives_all():
    assert pick_channels(5, 9, 0, "x") == (0, 1, 2, 3, 4)
    assert pick_channels(5, 5, 3, "x") == (0, 1, 2, 3, 4)
    assert pick_channels(5, 0, 3, "x") == ()


def test_errors():
    with pytest.raises(ValueError, match="n_channels must be an integer >= 1, got 0"):
        pick_channels(0, 1, 0, "x")
    with pytest.raises(ValueError, match="k must be an integer >= 0, got -1"):
        pick_channels(4, -1, 0, "x")
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -3"):
        pick_channels(4, 1, -3, "x")
    with pytest.raises(ValueError, match="key must be a str, got int"):
        pick_channels(4, 1, 0, 7)
