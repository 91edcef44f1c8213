"""What a bogus input may cost: a gzip'd manifest of nothing but newlines, a shard message that names a
shard no plan has. Each is refused early, and leaves nothing behind."""
import gzip

import pytest

from tests.helpers import visionfleet
from tests.test_embedded import embedded_env
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.sources import MAX_SKIPPED_BYTES, iter_source


def test_a_gzipped_manifest_of_newlines_is_refused_at_once_with_its_line(tmp_path):
    bomb = tmp_path / "list.txt.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as out:  # 30 MB of newlines in 30 KB: 6 s of CPU to read through
        for _ in range(30):
            out.write(b"\n" * (1 << 20))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ConfigError, match=f"list.txt.gz, line {MAX_SKIPPED_BYTES + 1}: over {MAX_SKIPPED_BYTES} "
                                          "bytes of blank or comment lines in a row"):
        list(iter_source(str(bomb)))
    result = visionfleet("relabel", str(bomb), "-o", str(tmp_path / "out"), env=embedded_env(tmp_path), timeout=120)
    assert result.returncode == 2 and f"over {MAX_SKIPPED_BYTES} bytes of blank" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_blank_and_comment_lines_between_uris_are_fine_below_the_bound(tmp_path):
    gap = "\n" * (MAX_SKIPPED_BYTES // 2) + "# a comment\n   \n"
    manifest = tmp_path / "list.txt.gz"
    manifest.write_bytes(gzip.compress(("".join(f"{gap}oss://b/{i}.jpg\n" for i in range(40)) + gap).encode()))
    assert list(iter_source(str(manifest))) == [f"oss://b/{i}.jpg" for i in range(40)]
