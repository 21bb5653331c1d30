"""Video tracking parity for the 2.0 generation and a larger 2.1 variant; the cases, harness
and tolerances are those of test_tracking.py."""

import pytest

from tests.test_tracking import check_case

CASES = [
    ("sam2_hiera_t", "cond_frames_both_ways", 2.0),
    ("sam2.1_hiera_s", "three_objects", 2.0),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,case,bias", CASES)
def test_track_video_matches_reference(name, case, bias, tmp_path_factory):
    check_case(name, case, bias, tmp_path_factory)
