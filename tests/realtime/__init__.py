"""Tests of the realtime relay (/ws/realtime/)."""
