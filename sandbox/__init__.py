"""Local simulators of the four external APIs (see docs/sandbox.md)."""
