"""Relay stage: workers that move queued recipients to the upstream provider."""
