"""Fake fal.ai and Tenstorrent servers on loopback, for tests and for trying Studio without keys.

See /work/shared/PROTOCOLS.md for the wire protocols they speak (failures included).
"""
