import pytest

from midiarr.errors import OptionError
from midiarr.roles import assign_roles, check_stem, infer_role, parse_role_overrides, role_from_name
from midiarr.song import Note, Song, Track, notes_array


def _track(name="", program=0, is_drum=False, pitch=60):
    return Track(name=name, program=program, is_drum=is_drum, notes=notes_array([Note(0, 480, pitch, 80)]))


@pytest.mark.parametrize(
    "track, role",
    [
        (_track(is_drum=True), "drums"),
        (_track(program=33, pitch=40), "bass"),
        (_track(program=29), "guitar"),
        (_track(program=4), "piano"),
        (_track(program=48), "strings"),
        (_track(program=73), "lead"),
        (_track(program=90), "other"),
        (_track(name="Bass", program=0, pitch=38), "bass"),  # name wins over a default program
        (_track(name="Bass Drum", program=0, is_drum=True), "drums"),
        (_track(name="Bassoon", program=70), "lead"),
        (_track(name="Lead Guitar", program=30), "guitar"),
        (_track(name="Melody", program=0), "lead"),
        (_track(name="Contrabass", program=43, pitch=36), "bass"),
        (_track(name="Slap bass", program=36, pitch=72), "other"),  # a "bass" that plays high is not the bass
    ],
)
def test_infer_role(track, role):
    assert infer_role(track) == role


def test_name_words():
    assert role_from_name("E.Piano 1") == "piano"
    assert role_from_name("Strings 2") == "strings"
    assert role_from_name("Track 7") is None


def test_overrides_win_and_are_checked():
    song = Song(tracks=[_track(program=0), _track(program=0)])
    assert assign_roles(song, parse_role_overrides(["1=bass"])) == {0: "piano", 1: "bass"}
    with pytest.raises(OptionError, match=r"tracks 0\.\.1"):
        assign_roles(song, {5: "bass"})
    with pytest.raises(OptionError, match="unknown role"):
        parse_role_overrides(["1=tuba"])
    with pytest.raises(OptionError, match="TRACK=ROLE"):
        parse_role_overrides(["bass"])


def test_explicit_track_role_is_kept():
    t = _track(program=0)
    t.role = "strings"
    assert infer_role(t) == "strings"


def test_check_stem():
    assert check_stem("Bass") == "bass"
    with pytest.raises(OptionError, match="unknown stem"):
        check_stem("kazoo")
