"""``rotation.kv.parse_time``: Vault's RFC 3339 timestamps, and the same answers as before.

``parse_time`` now tries ``datetime.fromisoformat`` on the raw text first (it
reads ``Z`` and drops fractional digits past the sixth on Python >= 3.11) and
falls back to the original normalisation. :func:`reference` is that original
function, kept here verbatim: for Vault-shaped timestamps and for arbitrary
text both must return the same value (offset included) or both raise.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotation.kv import parse_time


def reference(value: object) -> datetime | None:
    """``parse_time`` as it was: normalise ``Z`` and the fraction, then ``fromisoformat``."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    text = value.replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = "".join(itertools.takewhile(str.isdigit, rest))
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6]}{tz}"
    return datetime.fromisoformat(text)


def outcome(value: object) -> tuple[str, object]:
    """The value and its offset, or the exception type: what two parsers must agree on."""
    try:
        got = parse_time(value)
    except ValueError:
        return ("error", ValueError)
    return ("ok", (got, None if got is None else got.utcoffset()))


def reference_outcome(value: object) -> tuple[str, object]:
    """:func:`outcome` for :func:`reference`."""
    try:
        got = reference(value)
    except ValueError:
        return ("error", ValueError)
    return ("ok", (got, None if got is None else got.utcoffset()))


@pytest.mark.parametrize(("text", "want"), [
    ("2026-11-27T08:59:26.155435002Z", datetime(2026, 11, 27, 8, 59, 26, 155435, tzinfo=UTC)),
    ("2026-11-27T08:59:26.999999999Z", datetime(2026, 11, 27, 8, 59, 26, 999999, tzinfo=UTC)),
    ("2026-11-27T08:59:26.1Z", datetime(2026, 11, 27, 8, 59, 26, 100000, tzinfo=UTC)),
    ("2026-11-27T08:59:26Z", datetime(2026, 11, 27, 8, 59, 26, tzinfo=UTC)),
    ("2026-11-27T08:59:26.1234567+05:30",
     datetime(2026, 11, 27, 8, 59, 26, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))),
])
def test_vault_timestamps(text: str, want: datetime) -> None:
    got = parse_time(text)
    assert got == want and got is not None and got.utcoffset() == want.utcoffset()


@pytest.mark.parametrize("value", [None, "", 0, "0001-01-01T00:00:00Z", ["2026-01-01"]])
def test_no_time(value: object) -> None:
    assert parse_time(value) is None


def test_not_a_time_raises() -> None:
    for text in ("yesterday", "2026-11-27T08:59:26.x1Z", "2026-13-01T00:00:00Z"):
        with pytest.raises(ValueError, match=r"\S"):
            parse_time(text)


_digits = st.text("0123456789", min_size=0, max_size=12)
_offsets = st.sampled_from(["Z", "z", "", "+00:00", "-07:00", "+05:30", "+0530", "+05",
                            "+05:30:15", "+05:30:15.123456789", "Z+01:00", " Z"])


@st.composite
def vaultish(draw: st.DrawFn) -> str:
    """RFC 3339-like text, often valid, sometimes slightly off in any component."""
    when = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
    sep = draw(st.sampled_from(["T", "t", " ", "_"]))
    fraction = draw(st.one_of(st.just(""), _digits.map(lambda d: "." + d),
                              _digits.map(lambda d: "," + d)))
    date = draw(st.sampled_from([when.strftime("%Y-%m-%d"), when.strftime("%Y%m%d")]))
    clock = draw(st.sampled_from([when.strftime("%H:%M:%S"), when.strftime("%H%M%S"),
                                  when.strftime("%H:%M")]))
    return f"{date}{sep}{clock}{fraction}{draw(_offsets)}"


@given(vaultish())
def test_same_answers_as_before_on_timestamp_shaped_text(text: str) -> None:
    assert outcome(text) == reference_outcome(text)


@given(st.text(alphabet=st.sampled_from("0123456789-:.,+TZ z"), max_size=40))
def test_same_answers_as_before_on_arbitrary_text(text: str) -> None:
    assert outcome(text) == reference_outcome(text)
