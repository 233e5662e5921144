"""bench/history_lists.py: which export it reads, a missing one named, a protocol it does not know refused."""
import pytest

from bench import history_lists


def test_the_largest_mix_export_is_read_and_a_missing_one_is_named(tmp_path):
    for mix in ("mix03-steam", "mix11-steam+yelp", "mix06-steam"):
        (tmp_path / "mixes" / mix / "targets" / "steam" / "ckpt" / "s3000st" / "best").mkdir(parents=True)
    assert history_lists.export(tmp_path, "steam", "s3000st").parts[-6] == "mix11-steam+yelp"
    with pytest.raises(SystemExit, match="targets/yelp/ckpt/s3000st/best: no export"):
        history_lists.export(tmp_path, "yelp", "s3000st")


@pytest.mark.parametrize("argv, says", [(["--protocols", "loo,next"], "--protocols: unknown next"),
                                        (["--protocols", "horizon", "--horizon", "1"], "--horizon: a target set")])
def test_bad_protocols_are_refused_before_any_work(tmp_path, capsys, argv, says):
    with pytest.raises(SystemExit) as stop:
        history_lists.main([*argv, "--root", str(tmp_path / "none"), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and says in capsys.readouterr().err and not (tmp_path / "out").exists()
