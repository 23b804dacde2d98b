import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ltgcast.cli import main
from tests.support.goesfiles import write_abi_l1b, write_glm
from tests.support.models import served_version


def test_inspect_prints_one_json_object_per_file(tmp_path, capsys):
    abi = write_abi_l1b(tmp_path, np.full((4, 5), 60.0))
    glm = write_glm(tmp_path, lat=[35.0, 36.0], lon=[-97.0, -96.0], offsets_s=[1.0, 2.0])
    assert main(["inspect", str(abi), str(glm)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["product"] for line in lines] == ["ABI-L1b-RadC", "GLM-L2-LCFA"]
    assert lines[0]["units"] == "K"
    assert lines[0]["shape"] == [4, 5]
    assert lines[0]["scan_start"] == "2024-06-15T18:01:17.800Z"
    assert lines[0]["valid_fraction"] == 1.0
    assert lines[1]["flashes"] == 2
    assert lines[1]["first_flash_time"] == "2024-06-15T18:02:01.000Z"
    assert (lines[1]["lat_min"], lines[1]["lon_max"]) == (35.0, -96.0)


def test_inspect_reports_broken_files_and_still_reports_the_others(tmp_path, capsys):
    good = write_glm(tmp_path, lat=[35.0], lon=[-97.0], offsets_s=[1.0])
    broken = tmp_path / "cut" / "OR_GLM-L2-LCFA_G16_s20241671802200_e20241671802400_c20241671802410.nc"
    broken.parent.mkdir()
    broken.write_bytes(good.read_bytes()[:3000])
    unnamed = tmp_path / "mystery.nc"
    unnamed.write_bytes(good.read_bytes())
    assert main(["inspect", str(broken), str(good), str(unnamed)]) == 1
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1
    errors = captured.err.splitlines()
    assert len(errors) == 2
    assert str(broken) in errors[0]
    assert "NetCDF" in errors[0]
    assert "mystery.nc" in errors[1]
    assert "expected one of" in errors[1]


def test_simulate_writes_a_scenario_the_readers_accept(tmp_path, capsys):
    out = tmp_path / "scenario"
    code = main(["simulate", "--out", str(out), "--sector", "M1", "--start", "2024-06-15T18:00Z", "--minutes", "2"])
    assert code == 0
    assert "wrote 2 ABI frames and 6 GLM granules" in capsys.readouterr().out
    assert main(["inspect", *map(str, sorted(out.glob("*.nc")))]) == 0


def test_simulate_rejects_a_bad_start_time(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path), "--start", "yesterday"]) == 2
    assert "--start must be ISO 8601" in capsys.readouterr().err


def test_run_says_clearly_when_noaa_is_unreachable(monkeypatch, capsys):
    import ltgcast.service

    def offline(address, timeout=None):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(ltgcast.service.socket, "create_connection", offline)
    assert main(["run"]) == 1  # the default source: NOAA's GOES-19 bucket
    err = capsys.readouterr().err
    assert "the network is unreachable: cannot reach noaa-goes19.s3.amazonaws.com:443" in err
    assert "make demo" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sectors", "C,X"], "--sectors: expected a subset of C,F,M1,M2, found X"),
        (["--http", "8080"], "--http: expected HOST:PORT, found '8080'"),
        (["--poll-interval", "-1"], "--poll-interval: expected a number >= 0"),
        (["--max-age-minutes", "-5"], "--max-age-minutes: expected a number >= 0"),
        (["--scorer", "tfserving", "--shadow", "--watch", "0"], "--scorer tfserving: TF Serving loads versions"),
        (["--scorer", "tfserving"], "run with --watch 0 and without --shadow"),
        (["--source", "none"], "--source none (a worker without ingest) needs a shared bus"),
        (["--future-tolerance-s", "-1"], "--future-tolerance-s: expected a number >= 0, found -1.0"),
        (["--scorer", "gpu"], "unknown scorer backend 'gpu'; expected one of: embedded, patch, tfserving, tensorflow"),
        (["--cors-origin", "https://viewer.example/"], "CORS origin: expected scheme://host[:port] (no path"),
        (["--cors-origin", "http://[::1"], "or *, found 'http://[::1'"),  # urlsplit's own refusal, not a traceback
        (
            ["--cors-origin", ""],
            "CORS origin: expected scheme://host[:port] (no path, no trailing slash) or *, found ''",
        ),
    ],
)
def test_run_refuses_bad_settings_before_starting_anything(flags, message, capsys):
    assert main(["run", "--source", "sim:", *flags]) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_scorer_in_the_environment_stops_the_start_not_the_first_model_load(monkeypatch, capsys):
    monkeypatch.setenv("LTGCAST_SCORER", "gpu")  # a default argparse never checks against choices
    assert main(["run", "--source", "sim:"]) == 2
    assert "ScorerSettings.backend: unknown scorer backend 'gpu'" in capsys.readouterr().err


def test_the_future_tolerance_is_a_flag_of_run_and_ingest(tmp_path, capsys):
    from ltgcast.flags import Parser
    from ltgcast.ingestion import IngestSettings, add_ingest_arguments
    from ltgcast.service import ServiceSettings, add_run_arguments

    for add, settings in ((add_run_arguments, ServiceSettings), (add_ingest_arguments, IngestSettings)):
        parser = Parser(env={})
        add(parser)
        assert settings.from_args(parser.parse_args(["--source", "sim:"])).future_tolerance_s == 300.0
        tolerant = settings.from_args(parser.parse_args(["--source", "sim:", "--future-tolerance-s", "900"]))
        assert tolerant.future_tolerance_s == 900.0
    assert main(["ingest", "--source", f"dir:{tmp_path}", "--state", str(tmp_path), "--future-tolerance-s", "-5"]) == 2
    assert "--future-tolerance-s: expected a number >= 0, found -5.0" in capsys.readouterr().err


@pytest.mark.slow
def test_run_replays_the_simulator_into_the_store_and_exits_when_idle(tmp_path, capsys, caplog):
    caplog.set_level("INFO")
    store = tmp_path / "grids"
    argv = ["run", "--source", "sim:?sector=M1&minutes=6&seed=2", "--max-age-minutes", "0", "--exit-when-idle",
            "--store", str(store), "--state", str(tmp_path / "state"), "--http", "127.0.0.1:0", "--watch", "0",
            "--glm-deadline", "0.5", "--poll-interval", "0.2"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["grids"] == 6
    assert summary["outcomes"]["scored"] == 6
    assert summary["models"]["stable"] == served_version()  # the committed default, whatever its version
    assert len(list(store.glob("M1/*/*.nc"))) == 6
    messages = [r.getMessage() for r in caplog.records]
    stored = [m for m in messages if m.startswith("worker: stored grid ")]
    assert len(stored) == 6  # one line per grid: sector, scan, age, model, seconds
    assert ": sector M1, scan 2024-06-15T18:" in stored[0]
    assert f"model lightning v{served_version()}" in stored[0]
    over = [m for m in messages if "the replay is over" in m]
    assert len(over) == 1
    assert "6 ABI frame(s) and " in over[0]
    assert "6 grid(s) made; stopping" in over[0]
    lags = [float(m.split("(lag ")[1].split(" s")[0]) for m in messages if m.startswith("announced ")]
    assert lags
    assert all(20.0 <= lag < 3600.0 for lag in lags)  # on the replay's clock, not 2.5 years behind the wall clock


@pytest.mark.realdata
def test_installed_console_script_inspects_every_real_sample(real_data):
    script = Path(sys.executable).with_name("ltgcast")
    files = sorted(str(p) for p in real_data.glob("*/*.nc"))
    done = subprocess.run([str(script), "inspect", *files], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == len(files)
    empty = next(line for line in lines if "s20200160612000" in line["path"])
    assert empty["flashes"] == 0
    assert empty["first_flash_time"] is None


def test_bench_read_prints_timings_and_writes_json(tmp_path, capsys):
    abi = write_abi_l1b(tmp_path, np.full((4, 5), 60.0))
    report = tmp_path / "bench" / "read.json"
    assert main(["bench-read", str(abi), "--repeat", "2", "--json", str(report)]) == 0
    assert "s best" in capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["files"][0]["repeat"] == 2
    assert data["files"][0]["shape"] == [4, 5]
    assert 0 < data["files"][0]["seconds_best"] <= data["files"][0]["seconds_median"]


def test_bench_featurize_writes_the_documented_json(tmp_path, capsys):
    out = tmp_path / "featurize.json"
    args = ["bench", "featurize", "--sector", "M1", "--repeat", "2", "--flashes", "6000", "--sample", "256"]
    assert main([*args, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["pixels"] == 500 * 500
    assert report["flashes"] == 6000  # the scenario's own (3272 since the simulator's wider rates) plus random ones
    assert 0 < report["seconds_min"] <= report["seconds_median"] <= report["seconds_max"]
    assert report["peak_rss_mib"] > 0
    assert report["naive_seconds_per_frame_extrapolated"] > report["seconds_median"]
    assert "seconds_median" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_latency_runs_the_service_with_its_default_settings(tmp_path, capsys):
    out = tmp_path / "latency.json"
    assert main(["bench", "latency", "--sector", "M1", "--frames", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["settings"], report["poll_interval_s"], report["spool_watch"]) == ("defaults", 2.0, "events")
    assert report["scorer"] == "embedded"
    assert len(report["seconds"]) == 1
    parts = report["parts_seconds_median"]
    assert set(parts) == {"to_announced", "announced_to_stored", "stored_to_api"}
    assert 0 < parts["to_announced"] < report["seconds_median"]  # each part is a piece of the whole
    assert 0 < parts["announced_to_stored"] < report["seconds_median"]
    assert "defaults settings, spool events" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_nowcast_reports_each_stage_with_the_default_scorer(tmp_path, capsys):
    out = tmp_path / "nowcast.json"
    assert main(["bench", "nowcast", "--sector", "M1", "--repeat", "1", "--sample", "64", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    parts = report["parts_seconds_median"]
    assert list(parts) == ["read", "featurize", "score", "write"]
    assert all(0 < seconds < report["frame_seconds_median"] for seconds in parts.values())
    assert sum(parts.values()) == pytest.approx(report["frame_seconds_median"], rel=0.05)
    assert (report["backend"], report["pixels"], report["trend"]) == ("embedded", 500 * 500, "ok")
    assert "median score (s)" in capsys.readouterr().out


def _options(parser, path=("ltgcast",)):
    """Every (subcommand path, action) of the parser tree, subparsers included."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        else:
            yield " ".join(path), action


def test_every_option_of_every_subcommand_has_help_and_shows_its_default():
    import argparse

    from ltgcast.cli import build_parser

    parser = build_parser()
    found = list(_options(parser))
    assert len({command for command, _ in found}) > 25  # the walk reaches nested subcommands (bench read, models add)
    missing = [f"{command} {action.option_strings or action.dest}" for command, action in found
               if not action.help and not isinstance(action, argparse._HelpAction)]  # fmt: skip
    assert missing == []
    unshown = [f"{command} {action.option_strings}" for command, action in found
               if action.help != argparse.SUPPRESS and action.option_strings and not action.required
               and action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
               and "default" not in parser.formatter_class("p")._get_help_string(action)]  # fmt: skip
    assert unshown == []
    run_help = next(sub for name, sub in parser._subparsers._group_actions[0].choices.items() if name == "run")
    assert "(default: 512)" in run_help.format_help()  # --tile: a default not named in its help text is shown


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["models", "list", "--base", "B"], ["models", "list", "--model-base", "B"]),
        (["models", "promote", "--name", "N", "--version", "2"],
         ["models", "promote", "--model-name", "N", "--version", "2"]),
        (["nowcast", "--ir", "F", "--out", "O", "--backend", "patch", "--name", "N"],
         ["nowcast", "--ir", "F", "--out", "O", "--scorer", "patch", "--model-name", "N"]),
        (["bench", "nowcast", "--backend", "tensorflow"], ["bench", "nowcast", "--scorer", "tensorflow"]),
        (["bench-read", "F"], ["bench", "read", "F"]),
        (["bench-fuzz", "--cases", "3"], ["bench", "fuzz", "--cases", "3"]),
    ],
)  # fmt: skip
def test_old_spellings_still_work_for_one_release_but_are_hidden(old, new):
    from ltgcast.cli import build_parser

    parser = build_parser()
    parsed_old, parsed_new = vars(parser.parse_args(old)), vars(parser.parse_args(new))
    for namespace in (parsed_old, parsed_new):
        namespace.pop("func")
        namespace.pop("command")
        namespace.pop("benchmark", None)
    assert parsed_old == parsed_new
    assert parser.parse_args(new).func.__code__ is parser.parse_args(old).func.__code__


def test_old_spellings_are_not_in_the_help(capsys):
    for argv in (["models", "add", "--help"], ["nowcast", "--help"], ["--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        assert "--base " not in text
        assert "--backend" not in text
        assert "--name " not in text
        assert "bench-read" not in text


def test_version_names_the_package_and_the_default_model(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"ltgcast {version('ltgcast')}"
    assert out[1].startswith(f"default model: lightning v{served_version()} (")


def _ltgcast_importtime(argv, cwd):
    """Run ``python -X importtime -m ltgcast ARGV``: exit status, stderr lines that are not import times, modules."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "ltgcast", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    lines = done.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
    return done.returncode, [line for line in lines if not line.startswith("import time:")], imported


def test_a_busy_port_is_refused_in_one_line_before_anything_heavy_loads(tmp_path):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        code, err, imported = _ltgcast_importtime(["run", "--source", "sim:", "--http", f"127.0.0.1:{port}",
                                                   "--state", str(tmp_path / "state")], tmp_path)  # fmt: skip
    assert code == 2
    assert err == [f"ltgcast run: --http 127.0.0.1:{port}: cannot listen there (Address already in use); "
                   "stop what holds it or pick another port"]  # fmt: skip
    assert "ltgcast.cli" in imported  # the import times were read
    assert not {"tensorflow", "onnxruntime", "uvicorn", "fastapi", "serve.worker.loop"} & imported  # settings only
    assert not (tmp_path / "state").exists()


def test_a_bad_flag_is_refused_in_one_line_before_anything_heavy_loads(tmp_path):
    code, err, imported = _ltgcast_importtime(["run", "--sorcer", "sim:"], tmp_path)
    assert code == 2
    assert err == ["ltgcast: unrecognized arguments: --sorcer sim: (see ltgcast --help)"]
    assert "ltgcast.cli" in imported
    assert "tensorflow" not in imported
    code, err, _ = _ltgcast_importtime(["nowcast", "--ir", "x.nc", "--out", "g.nc", "--scorer", "magic"], tmp_path)
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith("ltgcast nowcast: argument --scorer: invalid choice: 'magic'")


def test_the_default_model_is_found_from_any_working_directory(tmp_path, monkeypatch, capsys):
    from ltgcast.flags import Parser
    from ltgcast.nowcasting import add_model_base_argument, version_path

    def model_base(argv: list[str], env: dict[str, str]) -> Path:
        parser = Parser(env=env)
        add_model_base_argument(parser)
        return Path(parser.parse_args(argv).model_base)

    monkeypatch.chdir(tmp_path)
    assert version_path(model_base([], {}), "lightning", None).is_dir()
    assert model_base([], {"LTGCAST_MODEL_BASE": "a", "LTGCAST_MODELS": "b"}) == Path("a")
    assert model_base([], {"LTGCAST_MODELS": "b"}) == Path("b")
    assert model_base(["--model-base", "c"], {"LTGCAST_MODEL_BASE": "a"}) == Path("c")
    simulate = ["simulate", "--out", "scenario", "--sector", "M1", "--start", "2024-06-15T18:00Z", "--minutes", "1"]
    assert main(simulate) == 0
    frame = next(str(p) for p in Path("scenario").glob("OR_ABI-*.nc"))
    assert main(["nowcast", "--ir", frame, "--out", "grid.nc"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["shape"] == [500, 500]
    assert Path("grid.nc").is_file()


@pytest.mark.slow
def test_tensorflow_start_up_noise_stays_off_stderr_and_other_lines_are_kept():
    script = ("import os, sys; from ltgcast.quiet import quiet_tensorflow; quiet_tensorflow(os.environ); "
              "sys.stderr.write('mine\\n'); import tensorflow as tf; tf.constant(1.0) + 1.0; "
              "sys.stderr.write('end\\n')")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                          check=True)  # fmt: skip
    assert done.stderr.splitlines() == ["mine", "end"]


def test_the_environment_is_read_once_as_the_flags_defaults_and_shown_in_the_help(capsys):
    from ltgcast.cli import build_parser
    from ltgcast.service import ServiceSettings

    env = {"LTGCAST_BUS": "kafka://broker:9092", "LTGCAST_CORS_ORIGINS": "https://a.example,https://b.example",
           "LTGCAST_ADMIN_TOKEN": "s3cret", "LTGCAST_MODELS": "/srv/models"}  # fmt: skip
    parser = build_parser(env)
    settings = ServiceSettings.from_args(parser.parse_args(["run", "--source", "sim:"]))
    assert settings.bus == "kafka://broker:9092"
    assert settings.web.cors_origins == ("https://a.example", "https://b.example")
    assert settings.api.admin_token == "s3cret"
    assert settings.model_base == Path("/srv/models")
    # a flag on the command line wins, and an appended flag replaces the variable's list rather than adding to it
    flags = parser.parse_args(["run", "--source", "sim:", "--bus", "inproc://", "--cors-origin", "https://c.example"])
    chosen = ServiceSettings.from_args(flags)
    assert (chosen.bus, chosen.web.cors_origins) == ("inproc://", ("https://c.example",))
    # the help names every variable; the token is never a flag
    with pytest.raises(SystemExit):
        build_parser({}).parse_args(["run", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for variable in ("LTGCAST_SOURCE", "LTGCAST_BUS", "LTGCAST_SCORER", "LTGCAST_TFSERVING", "LTGCAST_STORE",
                     "LTGCAST_MODEL_BASE, LTGCAST_MODELS", "LTGCAST_HTTP", "LTGCAST_REDIS_URL", "LTGCAST_STATE",
                     "LTGCAST_SITES", "LTGCAST_ALERT_WEBHOOK", "LTGCAST_CORS_ORIGINS"):  # fmt: skip
        assert f"[env: {variable}]" in shown, variable
    assert "token" not in shown.lower()


def test_a_bad_value_in_the_environment_is_refused_naming_the_variable(capsys):
    from ltgcast.flags import Parser, add_env_argument

    parser = Parser(prog="ltgcast run", env={"LTGCAST_TILE": "large"})
    add_env_argument(parser, "--tile", "LTGCAST_TILE", type=int, default=512, help="tile side")
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args([])
    assert stopped.value.code == 2
    assert "'large' from LTGCAST_TILE" in capsys.readouterr().err
    assert parser.parse_args(["--tile", "256"]).tile == 256  # the command line still wins


def test_service_settings_check_every_stage_on_construction_benchmarks_included():
    from foundation.errors import ConfigError
    from ltgcast.service import ServiceSettings

    defaults = ServiceSettings()
    assert (defaults.daemon.poll_interval_s, defaults.worker.poll_timeout_s) == (2.0, 0.25)
    assert defaults.sectors == ("C", "M1", "M2")
    with pytest.raises(ConfigError, match=r"DaemonSettings.poll_interval_s: expected a number > 0, found 0"):
        defaults.replaced(poll_interval_s=0)
    with pytest.raises(ConfigError, match=r"WorkerSettings.glm_deadline_s: expected a number >= 0, found -1"):
        defaults.replaced(glm_deadline_s=-1)
    with pytest.raises(ConfigError, match=r"WorkerSettings.sectors: expected some of"):
        defaults.replaced(sectors=frozenset({"X"}))
    with pytest.raises(ConfigError, match=r"threads is a setting of scorer and web"):
        defaults.replaced(threads=2)
    with pytest.raises(ConfigError, match=r"no setting named poll_intervall_s"):
        defaults.replaced(poll_intervall_s=1.0)
    with pytest.raises(ConfigError, match=r"needs a shared bus"):
        defaults.replaced(source="none")
    with pytest.raises(ConfigError, match=r"--scorer tfserving"):
        defaults.replaced(backend="tfserving")  # the watcher is on by default
    both = defaults.replaced(future_tolerance_s=900.0)
    assert (both.daemon.future_tolerance_s, both.worker.future_tolerance_s) == (900.0, 900.0)
    with pytest.raises(ConfigError, match=r"must refuse the same future scans"):
        ServiceSettings(daemon=both.daemon)


def test_an_empty_flag_counts_as_not_given_and_an_infinite_age_limit_is_none():
    from ltgcast.cli import build_parser
    from ltgcast.service import ServiceSettings

    parser = build_parser({"LTGCAST_REDIS_URL": "redis://cache:6379/0"})
    flags = parser.parse_args(["run", "--source", "sim:", "--redis", "", "--max-age-minutes", "inf"])
    settings = ServiceSettings.from_args(flags)
    assert settings.redis == "redis://cache:6379/0"  # as before: an empty --redis falls back to the variable
    assert settings.max_age_s == 0.0  # no limit
    bare = ServiceSettings.from_args(build_parser({}).parse_args(["run", "--source", "sim:", "--model-base", ""]))
    assert bare.model_base == ServiceSettings().model_base  # never Path(""), the working directory
