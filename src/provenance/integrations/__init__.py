"""Optional integrations of `provenance` with image-generation libraries.

Nothing here is imported by `provenance` itself: each integration imports its
third-party dependencies (torch, diffusers, transformers, installed with the
``provenance[diffusers]`` extra) only when it is used.
"""
