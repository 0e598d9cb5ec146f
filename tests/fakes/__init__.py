"""Fake fal.ai and Tenstorrent servers on loopback, for tests and for trying Studio without keys.

docs/protocols.md (in this repository) describes the wire protocols they speak, failures included.
"""
