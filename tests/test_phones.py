"""Phone inventory and Libri-light frame-wise alignments."""

import json

import numpy as np
import pytest

from repr_asr.data.phones import (
    PHONES,
    AlignmentError,
    alignment_file_name,
    normalize_phone,
    read_alignments,
    write_alignments,
)


def _random_alignment(rng, n_segments=12):
    """Contiguous segments on a 10 ms grid, consecutive phones distinct (so segments survive the frame format)."""
    segments, t = [], 0.0
    previous = None
    for _ in range(n_segments):
        phone = previous
        while phone == previous:
            phone = PHONES[rng.integers(len(PHONES))]
        length = int(rng.integers(1, 25)) / 100
        segments.append((phone, t, round(t + length, 2)))
        t = round(t + length, 2)
        previous = phone
    return segments


def test_inventory():
    assert len(PHONES) == 40 and PHONES[-1] == "SIL" and len(set(PHONES)) == 40
    assert all(p.isalpha() and p.isupper() for p in PHONES)


def test_round_trip_preserves_timings_to_10ms(tmp_path):
    rng = np.random.default_rng(0)
    alignments = {f"1-2-{i:04d}": _random_alignment(rng) for i in range(5)}
    write_alignments(tmp_path, alignments, subset="dev-clean")
    back = read_alignments(tmp_path)
    assert set(back) == set(alignments)
    for utt, segments in alignments.items():
        assert back[utt]["phone"] == [p for p, _, _ in segments]
        np.testing.assert_allclose(back[utt]["start"], [s for _, s, _ in segments], atol=1e-9)
        np.testing.assert_allclose(back[utt]["end"], [e for _, _, e in segments], atol=1e-9)


def test_unaligned_times_round_to_nearest_frame_and_gaps_are_silence(tmp_path):
    write_alignments(tmp_path, {"a": [("AH1", 0.012, 0.0861), ("t", 0.12, 0.204)]})
    back = read_alignments(tmp_path)["a"]
    assert back["phone"] == ["SIL", "AH", "SIL", "T"]
    np.testing.assert_allclose(back["start"], [0.0, 0.01, 0.09, 0.12])
    np.testing.assert_allclose(back["end"], [0.01, 0.09, 0.12, 0.2])
    for (s, e) in zip(back["start"], back["end"]):
        assert abs(s * 100 - round(s * 100)) < 1e-9 and abs(e * 100 - round(e * 100)) < 1e-9


def test_libri_light_file_layout(tmp_path):
    write_alignments(tmp_path, {"9-9-0001": [("SIL", 0.0, 0.03), ("B", 0.03, 0.05)]}, subset="10min")
    assert (tmp_path / "10min_phones.txt").read_text() == "9-9-0001 39 39 39 6 6\n"
    mapping = json.loads((tmp_path / "phones_mapping.json").read_text())
    assert mapping == {p: i for i, p in enumerate(PHONES)}
    assert alignment_file_name("10h") == "10h_phones.txt" and alignment_file_name("1h") == "1h_phones.txt"
    assert alignment_file_name("test-other") == "test-other.txt"


def test_reads_foreign_mapping(tmp_path):
    """A released folder with another phone order reads by its own mapping."""
    (tmp_path / "phones_mapping.json").write_text(json.dumps({"SIL": 0, "K": 1, "AE": 2, "T": 3}))
    (tmp_path / "1h_phones.txt").write_text("u1 0 0 1 1 1 2 3 3 0\n")
    back = read_alignments(tmp_path)["u1"]
    assert back["phone"] == ["SIL", "K", "AE", "T", "SIL"]
    np.testing.assert_allclose(back["end"], [0.02, 0.05, 0.06, 0.08, 0.09])
    with pytest.raises(AlignmentError, match="phone mapping other than"):
        write_alignments(tmp_path, {"u2": [("K", 0, 0.1)]})


def test_nested_subsets_must_agree(tmp_path):
    write_alignments(tmp_path, {"u": [("K", 0.0, 0.1)]}, subset="10h")
    write_alignments(tmp_path, {"u": [("K", 0.0, 0.1)]}, subset="1h")
    assert read_alignments(tmp_path)["u"]["phone"] == ["K"]
    write_alignments(tmp_path, {"u": [("T", 0.0, 0.1)]}, subset="10min")
    with pytest.raises(AlignmentError, match="u has alignments different from"):
        read_alignments(tmp_path)


def test_errors_name_utterance_and_file(tmp_path):
    with pytest.raises(AlignmentError, match="utterance x: segment 1 has phone 'QQ'"):
        write_alignments(tmp_path, {"x": [("K", 0, 0.1), ("QQ", 0.1, 0.2)]})
    with pytest.raises(AlignmentError, match="utterance x: segment 1 .* overlaps"):
        write_alignments(tmp_path, {"x": [("K", 0, 0.3), ("T", 0.1, 0.4)]})
    write_alignments(tmp_path, {"x": [("K", 0, 0.1)]})
    (tmp_path / "bad.txt").write_text("y 1 2 77\n")
    with pytest.raises(AlignmentError, match=r"bad\.txt:1: utterance y: phone id"):
        read_alignments(tmp_path)
    with pytest.raises(AlignmentError, match="no phones_mapping.json"):
        read_alignments(tmp_path / "nowhere")


def test_normalize_phone():
    assert normalize_phone("ah0") == "AH" and normalize_phone("ER1") == "ER"
    assert {normalize_phone(p) for p in ("sil", "sp", "pau", "h#", "")} == {"SIL"}
    with pytest.raises(KeyError):
        normalize_phone("ax")
