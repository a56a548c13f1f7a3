"""The image-reference grammar (grocker.reference): names, prefixes, and the parts of a name."""

from __future__ import annotations

import pytest

from grocker import reference
from grocker.errors import UsageError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("app", "app:latest"),
        ("app:1.0", "app:1.0"),
        ("registry.example.com/team/app:1.0", "registry.example.com/team/app:1.0"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("my_team/app-name:v1_2.3", "my_team/app-name:v1_2.3"),
    ],
)
def test_valid_image_names(name: str, expected: str) -> None:
    assert reference.check_image_name(name) == expected


@pytest.mark.parametrize("name", ["App:1.0", "app:1.0+local", "app name", "app:", "-app", "app:.1", "registry/app//x"])
def test_invalid_image_names(name: str) -> None:
    with pytest.raises(UsageError, match="is not a valid Docker reference"):
        reference.check_image_name(name)


@pytest.mark.parametrize("prefix", ["registry.example.com", "localhost:5000/team", "myaccount", "a.b/c/d"])
def test_valid_prefixes(prefix: str) -> None:
    reference.check_prefix(prefix)
    assert reference.is_valid_prefix(prefix)


@pytest.mark.parametrize("prefix", ["https://registry.example.com", "registry.example.com/Team", "a/", "team app"])
def test_invalid_prefixes(prefix: str) -> None:
    with pytest.raises(UsageError, match="is not a registry or namespace"):
        reference.check_prefix(prefix)


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("app", ("app", "latest")),
        ("app:1.0", ("app", "1.0")),
        ("localhost:5000/app", ("localhost:5000/app", "latest")),
        ("localhost:5000/team/app:v2", ("localhost:5000/team/app", "v2")),
    ],
)
def test_a_name_splits_into_repository_and_tag_port_numbers_aside(name: str, parts: tuple[str, str]) -> None:
    assert reference.split_tag(name) == parts


@pytest.mark.parametrize(("name", "pushable"), [("app:1", False), ("team/app:1", True), ("localhost:5000/app", True)])
def test_a_name_with_a_registry_or_namespace_can_be_pushed(name: str, pushable: bool) -> None:
    assert reference.has_registry(name) is pushable


def test_a_name_over_dockers_limits_is_refused() -> None:
    with pytest.raises(UsageError, match="has a repository of 256 characters"):
        reference.check_image_name("a" * 256 + ":1")
    with pytest.raises(UsageError, match="has a tag of 129 characters"):
        reference.check_length("app:" + "1" * 129, "-n")
