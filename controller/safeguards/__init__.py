"""Safeguards around executions: rate limits (more to come: burst alerts, dependency tracking)."""
