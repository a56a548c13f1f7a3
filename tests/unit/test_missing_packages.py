"""A system package the distribution lacks: the chain names it, from the package manager's words.

The patterns live beside the runtime families (grocker.config.families); the engine adapter knows
nothing of package managers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grocker.config.families import missing_packages
from grocker.errors import BuildError
from tests.unit.fakes import chain_engine
from tests.unit.test_chain import request_for, run


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["Reading package lists...", "E: Unable to locate package libfoo-dev"], ["libfoo-dev"]),
        (["ERROR: unable to select packages:", "  libfoo (no such package):", "    required by: world"], ["libfoo"]),
        (
            ["E: Unable to locate package a", "E: Unable to locate package b", "E: Unable to locate package a"],
            ["a", "b"],
        ),
        (["E: Package 'python3' has no installation candidate", "Unable to locate package x"], []),
    ],
    ids=["apt", "apk", "several-once-each", "other-errors"],
)
def test_missing_packages_are_read_in_each_family_s_words(lines: list[str], expected: list[str]) -> None:
    assert missing_packages(lines) == expected


@pytest.mark.parametrize("role", ["root", "compiler"])
def test_an_image_build_that_misses_a_package_names_it(tmp_path: Path, role: str) -> None:
    engine = chain_engine()
    engine.build_lines[f"{role} image"] = ["Step 3/5 : RUN /tmp/provision.sh", "E: Unable to locate package libyaml"]
    engine.build_failures[f"{role} image"] = BuildError(
        f"The {role} image build failed: returned a non-zero code: 100", details="E: Unable to locate package libyaml"
    )

    with pytest.raises(BuildError) as raised:
        run(engine, request_for(tmp_path))

    assert str(raised.value).startswith(
        f"The {role} image build failed because the distribution has no system package named libyaml. "
        "Correct the name in dependencies.run or dependencies.build"
    )
    assert raised.value.details == "E: Unable to locate package libyaml"


def test_other_image_build_failures_keep_the_engine_s_words(tmp_path: Path) -> None:
    engine = chain_engine()
    engine.build_lines["root image"] = ["Step 3/5 : RUN /tmp/provision.sh", "E: Sub-process /usr/bin/dpkg returned 1"]
    failure = BuildError("The root image build failed: returned a non-zero code: 100")
    engine.build_failures["root image"] = failure

    with pytest.raises(BuildError) as raised:
        run(engine, request_for(tmp_path))

    assert raised.value is failure
