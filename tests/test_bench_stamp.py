"""The bench's send-time stamp: read back exactly, and never a digit in it (a run of seven
digits may be screened as a phone number, protocol §14, and refused with check_first)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bench.generator import stamp, unstamp


@given(st.integers(min_value=0, max_value=2**64))
def test_a_stamp_reads_back_and_holds_no_digit(value: int) -> None:
    text = stamp(value)
    assert unstamp(text) == value
    assert not re.search(r"\d", text)
