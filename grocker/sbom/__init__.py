"""The SBOM: what an image is made of, as a CycloneDX document, pushed beside the image.

- facts: what the SBOM is made of, read in one container of the runner image;
- document: the CycloneDX 1.6 document, from those facts (pure, byte-identical for one image);
- referrers: an OCI artifact whose subject is the image, pushed to its registry.

The chain's step that uses them is grocker.chain.sbom. This __init__ imports nothing: the
libraries behind the modules (cyclonedx-python-lib, oras-py) are slow to import and only a
build that asks for an SBOM (or uses a fleet) needs them.
"""
