"""SOURCE_DATE_EPOCH: read from the environment at the edge, checked, and given to the runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from grocker import api
from grocker.chain import build
from grocker.errors import ConfigError
from grocker.labels import OCI_CREATED
from tests.unit.fakes import chain_engine


def _request(tmp_path: Path, epoch: str | None) -> build.BuildRequest:
    env = {"HOME": str(tmp_path)} | ({"SOURCE_DATE_EPOCH": epoch} if epoch is not None else {})
    config = api.load_config([], cwd=tmp_path)
    return api.prepare_build("app==1.0", config, image_name="app:1.0", cwd=tmp_path, env=env)


@pytest.mark.parametrize(("text", "epoch"), [(None, None), ("", None), ("1700000000", 1700000000)])
def test_source_date_epoch_comes_from_the_environment(tmp_path: Path, text: str | None, epoch: int | None) -> None:
    assert _request(tmp_path, text).source_date_epoch == epoch


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.5", "not a whole number of seconds"),
        (" 1700000000", "not a whole number of seconds"),
        ("1700000000\n", "not a whole number of seconds"),
        ("-1", "not a whole number of seconds"),
        ("١٧٠٠٠٠٠٠٠٠", "not a whole number of seconds"),  # Unicode digits are not ASCII ones
        ("1" * 13, "not a whole number of seconds"),
        ("100", r"from 315532800 \(1980-01-01\)"),
    ],
)
def test_a_bad_source_date_epoch_is_a_configuration_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        _request(tmp_path, text)

    assert caught.value.exit_code == 3
    assert "unset it" in str(caught.value)


def test_the_given_epoch_reaches_the_runner_layers_and_its_created_label(tmp_path: Path) -> None:
    engine = chain_engine()

    build.build(_request(tmp_path, "1700000000"), engine)

    dockerfile = engine.built["runner image"]["Dockerfile"].decode()
    assert dockerfile.count("export SOURCE_DATE_EPOCH=1700000000") == 2
    assert f'{OCI_CREATED}="2023-11-14T22:13:20Z"' in dockerfile
