"""Padded sizes: every shape that depends on what a user does (clicks, objects, prompted
frames) is rounded up to a bucket, so a session compiles a bounded set of programs.

- clicks per prompt (and per frame of an object): 16, then powers of two (32, 64, ...);
- objects tracked together: 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers of two and 1.5x
  them), so padding never costs more than a third of the batch beyond 2 objects;
- conditioning (prompted-frame) slots of the memory bank: 2, then powers of two.

Nothing depends on the video length: the frame loop runs fixed-size chunks and the length
enters the compiled programs as a traced scalar.
"""

from __future__ import annotations

MIN_CLICKS = 16
MIN_COND_SLOTS = 2


def power_of_two_bucket(n: int, least: int) -> int:
    """The smallest power-of-two multiple of `least` that is >= n."""
    size = least
    while size < n:
        size *= 2
    return size


def click_bucket(n: int) -> int:
    """Padded click count for n clicks (16, 32, 64, ...)."""
    return power_of_two_bucket(n, MIN_CLICKS)


def cond_slot_bucket(n: int) -> int:
    """Padded conditioning-slot count for n prompted frames (2, 4, 8, ...)."""
    return power_of_two_bucket(n, MIN_COND_SLOTS)


def object_bucket(n: int) -> int:
    """Padded object count for n objects: 1, 2, 3, 4, 6, 8, 12, 16, 24, ..."""
    if n <= 2:
        return max(n, 1)
    size = 2
    while True:
        if size >= n:
            return size
        if size * 3 // 2 >= n:
            return size * 3 // 2
        size *= 2
