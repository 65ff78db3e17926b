"""The embedded local provider (work in progress)."""
