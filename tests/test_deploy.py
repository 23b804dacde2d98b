"""The compose file of the distributed mode speaks the CLI and the repository layout this checkout has."""

from __future__ import annotations

from pathlib import Path

import yaml

from ltgcast.cli import build_parser
from ltgcast.service import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"


def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]


def test_every_ltgcast_command_in_the_compose_file_parses_and_builds_its_settings() -> None:
    parser = build_parser({})
    ingest = parser.parse_args(services()["ingest"]["command"])
    assert (ingest.command, ingest.bus) == ("ingest", "kafka://kafka:9092")
    worker = parser.parse_args(services()["worker"]["command"])
    settings = ServiceSettings.from_args(worker)
    assert (settings.source, settings.scorer.backend) == ("none", "tfserving")
    assert settings.scorer.tfserving.target == "tfserving:8500"
    assert settings.http == ("0.0.0.0", 8080)
    assert not settings.watch


def test_tf_serving_reads_the_repository_as_ltgcast_writes_it() -> None:
    tfserving = services()["tfserving"]
    assert "-gpu" in tfserving["image"]
    mount = next(v for v in tfserving["volumes"] if v.endswith(":/models:ro"))
    repository = (COMPOSE.parent / mount.split(":")[0]).resolve()
    assert repository == ROOT / "models" / "repository"
    config = (repository / "models.config").read_text(encoding="utf-8")
    assert "base_path: '/models/lightning'" in config or 'base_path: "/models/lightning"' in config
    assert "--model_config_file=/models/models.config" in tfserving["command"]


def test_the_image_copies_every_package_the_wheel_lists() -> None:
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    rooms = {name.split(".")[0] for name in packages}
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text(encoding="utf-8").splitlines()
    copied = {line.split()[1] for line in dockerfile if line.startswith("COPY ") and "--from" not in line}
    assert rooms == {"foundation", "ingest", "featurize", "models", "serve", "monitor", "ltgcast"}
    assert rooms <= copied, f"the image would not install: {sorted(rooms - copied)} not copied"
    assert not {"tests"} & copied  # test support stays out of the image
