"""The publisher's modules (resources/wheelhouse/publish.py), shipped into its container beside it.

Standard library only, like the publisher: names (file names, URLs as they may be recorded),
volume (the wheel and candidates volumes' files and records), indexes (reaching an index) and
installers (the installers the publisher makes for the runner).
"""


class PublishError(Exception):
    """A failure the host reports as a build failure."""
