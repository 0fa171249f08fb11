"""Window schedules and fuse weights."""
from __future__ import annotations

import pytest
import torch

from dreamoving.context_windows import ContextOptions, context_windows, fuse_weights


@pytest.mark.parametrize("schedule", ["static", "uniform", "batched"])
@pytest.mark.parametrize("frames", [1, 16, 64, 65, 150, 257])
def test_windows_cover_every_frame_in_order(schedule, frames):
    options = ContextOptions(64, 16, schedule)
    for step in range(6):
        windows = context_windows(frames, options, step)
        assert sorted({i for w in windows for i in w}) == list(range(frames))
        for w in windows:
            assert w == list(range(w[0], w[0] + len(w))), "windows are contiguous runs of frames"
            assert len(w) == min(frames, 64) or schedule == "batched"


def test_static_windows_overlap_and_end_aligned():
    windows = context_windows(150, ContextOptions(64, 16))
    assert [w[0] for w in windows] == [0, 48, 86]
    assert windows[-1][-1] == 149


def test_uniform_windows_move_between_steps():
    options = ContextOptions(64, 16, "uniform")
    starts = [tuple(w[0] for w in context_windows(300, options, step)) for step in range(4)]
    assert len(set(starts)) > 1


def test_fuse_weights():
    options = ContextOptions(8, 4, fuse_method="pyramid")
    assert fuse_weights(list(range(8)), 20, options).tolist() == [1, 2, 3, 4, 4, 3, 2, 1]
    linear = ContextOptions(8, 4, fuse_method="overlap-linear")
    first, middle = fuse_weights(list(range(8)), 20, linear), fuse_weights(list(range(4, 12)), 20, linear)
    assert first[:4].tolist() == [1, 1, 1, 1] and first[-1] < 1, "the video's first frames are not faded"
    assert middle[0] < 1 and middle[-1] < 1 and torch.all(middle > 0)


@pytest.mark.parametrize("kwargs,message", [
    (dict(length=0), "context_length must be at least 1, got 0"),
    (dict(length=16, overlap=16), r"context_overlap must be at least 0 and less than context_length \(16\), got 16"),
    (dict(schedule="looped"), "context_schedule must be one of"),
])
def test_bad_options_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ContextOptions(**kwargs)
