"""Fuzzed uploads: real JPEG, PNG, TIFF, GIF, WebP, BMP, HEIC and DNG files mutated by a seeded RNG
(``tests/fuzz_decode.py``; thousands more: ``python -m benchmarks.decode_fuzz``)."""

from __future__ import annotations

import pytest

from tests import fuzz_decode
from worker.errors import DecodeError, classify
from worker.imaging import decode as decoder

SEED = 20261207
CASES = 400


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_mutated_files_decode_or_fail_alone_with_a_reason() -> None:
    """In a child process: a native crash or a hang is reported with its case instead of ending the run."""
    result = fuzz_decode.run_child(SEED, CASES, timeout_s=150)
    assert "crashed" not in result, result  # a crash, or a case past CASE_LIMIT_S ("hung": the watchdog)
    assert result["problems"] == [], result["problems"]  # another exception, a bad frame, the safety net
    assert result["decoded"] + result["refused"] == CASES
    assert result["decoded"] > CASES // 10 and result["refused"] > CASES // 4  # both outcomes are reached
    # Nothing allocated as a header claimed: a mutated size beyond the pixel limit is refused before decoding.
    assert result["peak_rss_growth_mb"] < result["memory_budget_mb"], result


def test_the_cases_are_the_same_bytes_everywhere() -> None:
    pool = fuzz_decode.seeds()
    first = [fuzz_decode.case(SEED, i, pool) for i in range(20)]
    again = [fuzz_decode.case(SEED, i, pool) for i in range(20)]
    assert [(s.name, m, d) for s, m, d in first] == [(s.name, m, d) for s, m, d in again]
    assert len({d for _, _, d in first}) == 20


def test_an_unforeseen_library_error_still_fails_only_the_photo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The safety net: whatever a library raises on a file damaged in a new way is a per-photo DecodeError."""
    seed = next(s for s in fuzz_decode.seeds() if s.name == "jpeg")

    def broken(exif: object) -> dict[str, object]:
        raise KeyError("a tag nobody expected")

    monkeypatch.setattr(decoder, "exif_summary", broken)
    with pytest.raises(DecodeError) as caught:
        decoder.decode(seed.data, photo_id="p", filename="IMG_1.jpg", max_pixels=10**8, origin="file")
    failure = classify(caught.value)
    assert failure.scope == "photo" and not failure.retryable
    assert "IMG_1.jpg could not be decoded (KeyError" in failure.reason and "upload" not in failure.reason
    assert isinstance(caught.value.__cause__, KeyError)
