"""`insert` only adds: no note, controller, pitch bend, program or channel of the user's song is lost or
changed, and a part the song already has is never replaced unasked (issue 26, item 1).

The songs are built in code (`midiarr.fixtures.misleading_band`): track names that mislead the role
guesser ("Lead Guitar" on a synth, a pitched "Bass Drum", a "Bass" above C4, "Banjo"/"Tenor Banjo").
Everything is checked end to end through MIDI files read back with mido, not through midiarr's reader.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import midiarr
from midiarr.engines import get_engine
from midiarr.errors import ExistingPartError
from midiarr.fixtures import band_song, misleading_band
from midiarr.io import load, save
from midiarr.roles import assign_roles
from tests.conftest import midi_tracks, run_cli

GUITARS = "track 0 'Lead Guitar', track 3 'Banjo', track 4 'Tenor Banjo'"
# Each part on a channel of its own, none where a position-numbering writer would put it (the
# drums on 9), so a writer that renumbers channels fails `assert_kept_exactly`.
CHANNELS = [4, 13, 2, 7, 11, 0, 9]


def misleading_file(path: Path, bars: int = 4) -> Path:
    song = misleading_band(bars=bars)
    for track, channel in zip(song.tracks, CHANNELS, strict=True):
        track.channel = channel
    path = save(song, path)
    assert [t.channel for t in load(path).tracks] == CHANNELS
    return path


@pytest.fixture
def song_file(tmp_path: Path) -> Path:
    return misleading_file(tmp_path / "song.mid")


def assert_kept_exactly(before: Path, after: Path, new_parts: int) -> list[tuple[str, list[tuple]]]:
    """Every track of ``before`` is in ``after``, in its place, with its name and the very same events
    (notes, velocities, programs, channels, controllers, pitch bends); after them come ``new_parts``
    new tracks, which return."""
    old, old_meta = midi_tracks(before)
    out, out_meta = midi_tracks(after)
    assert out_meta == old_meta  # tempo changes, meter, key
    assert len(out) == len(old) + new_parts, [name for name, _ in out]
    for (name, events), (name_after, events_after) in zip(old, out, strict=False):
        assert name_after == name, f"track {name!r} was lost or moved"
        assert events_after == events, f"track {name!r} changed"
    new = out[len(old) :]
    used = {dict(e[1:])["channel"] for _, events in old for e in events}
    for name, events in new:
        channels = {dict(e[1:])["channel"] for e in events}
        assert len(channels) == 1 and any(("type", "note_on") in e for e in events)
        if channels != {9}:  # a new pitched part never takes over a channel the song's own parts play on
            assert not channels & used, f"new part {name!r} shares channel {channels} with the song"
    return new


def test_misleading_names_get_the_roles_the_tests_rely_on() -> None:
    roles = assign_roles(misleading_band())
    assert roles == {0: "guitar", 1: "other", 2: "other", 3: "guitar", 4: "guitar", 5: "piano", 6: "drums"}


def test_refusal_names_the_tracks_and_how_to_proceed(song_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mid"
    assert run_cli("insert", song_file, "--stem", "guitar", "--engine", "rules", "-o", out) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("midiarr: error: ")
    assert f"already has a guitar part ({GUITARS})" in err
    assert "--replace" in err and "--role 0=other" in err
    assert not out.exists()  # nothing written, nothing lost
    # several stems: every conflict named in one line, before anything is written
    assert run_cli("insert", song_file, "--stem", "bass,drums,guitar", "--engine", "rules", "-o", out) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "a drums part (track 6 'Drums')" in err and GUITARS in err and "'Bass'" not in err


def test_library_refuses_with_the_tracks(song_file: Path) -> None:
    song = load(song_file)
    with pytest.raises(ExistingPartError) as info:
        get_engine("rules").insert(song, "guitar")
    assert info.value.tracks == [(0, "Lead Guitar", "guitar"), (3, "Banjo", "guitar"), (4, "Tenor Banjo", "guitar")]
    assert isinstance(info.value, midiarr.InputError)
    with pytest.raises(ExistingPartError, match="track 6 'Drums'"):
        midiarr.Arranger("rules").insert(song, "drums")
    with pytest.raises(ExistingPartError, match="Banjo"):  # checked for every stem before any is written
        midiarr.Arranger("rules").arrange(song, ["bass", "guitar"])
    assert song == load(song_file)  # the caller's song is untouched


def test_replace_replaces_and_says_so(song_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mid"
    assert run_cli("insert", song_file, "--stem", "guitar", "--engine", "rules", "-o", out, "--replace") == 0
    said = capsys.readouterr().out
    assert f"replaced the song's own part (--replace): {GUITARS}" in said
    names = [t.name for t in load(out).tracks]
    assert names == ["Bass Drum", "Bass", "Piano", "Drums", "Guitar"]
    result = get_engine("rules").insert(load(song_file), "guitar", replace=True)
    assert result.replaced_tracks == ["Lead Guitar", "Banjo", "Tenor Banjo"]
    song = midiarr.Arranger("rules").insert(load(song_file), "guitar", replace=True)
    assert [t.name for t in song.tracks] == names


def test_role_relabels_and_insert_then_adds(song_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mid"
    relabel = ["--role", "0=lead", "--role", "3=other", "--role", "4=other"]
    assert run_cli("-q", "insert", song_file, "--stem", "guitar", "--engine", "rules", "-o", out, *relabel) == 0
    assert_kept_exactly(song_file, out, 1)
    # an override is a user's word for every stem written after it, not only the first
    out2 = tmp_path / "out2.mid"
    args = ("-q", "insert", song_file, "--stem", "bass,guitar", "--engine", "rules", "-o", out2, *relabel)
    assert run_cli(*args) == 0
    assert_kept_exactly(song_file, out2, 2)
    # an unknown role is one line too
    assert run_cli("insert", song_file, "--stem", "guitar", "--role", "3=banjo", "-o", out) == 2


@pytest.mark.parametrize("timing", ["song", "grid"])
@pytest.mark.parametrize("engine", ["rules", "borrow"])
def test_every_other_event_is_kept_exactly(engine: str, timing: str, song_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mid"
    donor = save(band_song(bars=4), tmp_path / "donor.mid")
    extra = ["--donor", str(donor)] if engine == "borrow" else []
    args = ("-q", "insert", song_file, "--stem", "bass", "--engine", engine, "-o", out, "--timing", timing)
    assert run_cli(*args, *extra) == 0
    assert_kept_exactly(song_file, out, 1)


def test_adding_a_stem_the_song_lacks_never_touches_the_rest(song_file: Path, tmp_path: Path) -> None:
    # the "Bass" above C4 plays something else (role other), so a bass is added beside it, not over it
    song = load(song_file)
    result = get_engine("rules").insert(song, "bass", seed=3)
    assert result.replaced_tracks == [] and result.new_tracks == [7]
    assert result.song.tracks[:7] == song.tracks
    assert result.roles[7] == "bass" and result.roles[2] == "other"


def test_an_empty_track_of_the_role_is_no_part_and_stays() -> None:
    from midiarr.song import Track

    song = band_song(bars=2)
    song.tracks = [t for t in song.tracks if t.name != "Bass"] + [Track(name="Bass", program=33)]
    result = get_engine("rules").insert(song, "bass")
    assert result.song.tracks[: len(song.tracks)] == song.tracks and len(result.song.tracks) == len(song.tracks) + 1


def test_transformer_keeps_everything(tmp_path: Path) -> None:
    src = misleading_file(tmp_path / "short.mid", bars=2)
    out = tmp_path / "out.mid"
    assert run_cli("-q", "insert", src, "--stem", "bass", "--engine", "transformer", "-o", out, "--seed", "1") == 0
    assert_kept_exactly(src, out, 1)


def test_diffusion_keeps_everything(tmp_path: Path) -> None:
    src = misleading_file(tmp_path / "short.mid", bars=2)
    out = tmp_path / "out.mid"
    args = (
        "-q",
        "insert",
        src,
        "--stem",
        "bass,drums",
        "--engine",
        "diffusion",
        "--steps",
        "2",
        "-o",
        out,
        "--role",
        "6=other",
    )
    assert run_cli(*args) == 0
    assert_kept_exactly(src, out, 2)
