"""bench/history_lists.py: which export it reads, and a missing one named."""
import pytest

from bench import history_lists


def test_the_largest_mix_export_is_read_and_a_missing_one_is_named(tmp_path):
    for mix in ("mix03-steam", "mix11-steam+yelp", "mix06-steam"):
        (tmp_path / "mixes" / mix / "targets" / "steam" / "ckpt" / "s3000st" / "best").mkdir(parents=True)
    assert history_lists.export(tmp_path, "steam", "s3000st").parts[-6] == "mix11-steam+yelp"
    with pytest.raises(SystemExit, match="targets/yelp/ckpt/s3000st/best: no export"):
        history_lists.export(tmp_path, "yelp", "s3000st")
