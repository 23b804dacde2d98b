"""Source registry, options, filters, the spool's refusal of links and the synthetic feed's pacing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from foundation.errors import ConfigError, IngestError
from ingest.sources import Candidate, FrameFilter, SourceContext, get_source
from ingest.sources.sim import SimSource
from ingest.sources.spool import DirSpool
from ltgcast.cli import main
from tests.support.clock import FakeClock


def context(tmp_path: Path) -> SourceContext:
    return SourceContext(cache=tmp_path / "cache", clock=FakeClock(datetime(2024, 6, 15, 18, tzinfo=UTC)))


def test_registry_and_options_name_what_is_valid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown source 'ftp://x'; expected one of: dir:PATH, s3://BUCKET, sim:"):
        get_source("ftp://x", context(tmp_path))
    with pytest.raises(ConfigError, match="does not exist or is not a folder"):
        get_source(f"dir:{tmp_path / 'nowhere'}", context(tmp_path))
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['speed'\].*valid: patterns, settle_s"):
        get_source(f"dir:{tmp_path}?speed=2", context(tmp_path))
    with pytest.raises(ConfigError, match="hours: expected >= 1"):
        get_source("s3://noaa-goes19?hours=0", context(tmp_path))
    with pytest.raises(ConfigError, match="unknown ABI sectors"):
        FrameFilter(sectors=("M3",))
    spool = get_source(f"dir:{tmp_path}?patterns=OR_ABI-*.nc&settle_s=0.5", context(tmp_path))
    assert isinstance(spool, DirSpool)
    assert (spool.patterns, spool.settle_s) == (("OR_ABI-*.nc",), 0.5)


def test_filter_lists_noaa_product_folders() -> None:
    wanted = FrameFilter(sectors=("C", "M1", "M2"), abi_families=("ABI-L1b-Rad", "ABI-L2-CMIP"), glm=False)
    assert wanted.products() == ["ABI-L1b-RadC", "ABI-L1b-RadM", "ABI-L2-CMIPC", "ABI-L2-CMIPM"]


def test_sim_source_releases_files_as_they_arrive(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    source = get_source("sim:?sector=M1&minutes=3&seed=2&speed=60", ctx)
    assert isinstance(source, SimSource)
    first = source.poll()
    assert [c.name.split("_")[1] for c in first] == ["GLM-L2-LCFA"]  # only the first arrival (18:00:20) so far
    assert source.pending() == 3 * 4 - 1  # 3 frames and 9 GLM granules in all
    ctx.clock.advance(1.0)  # type: ignore[attr-defined]  # one simulated minute at speed 60
    assert len(source.poll()) > len(first)
    ctx.clock.advance(10.0)  # type: ignore[attr-defined]
    assert (len(source.poll()), source.pending()) == (12, 0)
    local = source.fetch(first[0])
    assert local.is_file()
    assert local.is_relative_to(tmp_path / "cache" / "sim")


def test_ingest_cli_refuses_bad_configuration_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ingest", "--source", "gopher://x", "--state", str(tmp_path), "--once"])
    assert code == 2
    assert "unknown source 'gopher://x'" in capsys.readouterr().err
    code = main(["ingest", "--source", f"dir:{tmp_path}", "--bands", "thirteen", "--state", str(tmp_path)])
    assert code == 2
    assert "--bands: expected ABI band numbers" in capsys.readouterr().err


def test_the_spool_lists_a_link_as_refused_and_never_hands_one_over(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "sub").mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    name = "OR_ABI-L1b-RadM1-M6C13_G19_s20241671801178_e20241671803563_c20241671804099.nc"
    link = spool / name
    link.symlink_to(secret)
    regular = spool / "sub" / name.replace("s2024167180", "s2024167181")
    regular.write_bytes(b"a regular file in a subfolder")
    source = get_source(f"dir:{spool}?settle_s=0", context(tmp_path))
    listed = {c.name: c for c in source.poll()}
    assert listed[regular.name].local == regular.resolve()
    assert listed[regular.name].refusal is None
    refused = listed[name]
    assert refused.local is None
    assert refused.refusal is not None
    assert refused.refusal[0] == "spool"
    assert f"is a symbolic link (to {secret})" in refused.refusal[1]
    with pytest.raises(IngestError, match="expected a regular file inside .*, found a link or special file"):
        source.fetch(Candidate(name, link.as_uri(), link.lstat().st_size, local=link))
    assert source.fetch(listed[regular.name]) == regular.resolve()
