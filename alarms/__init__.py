"""Alarm lifecycle and policy, and the hazard-rectification tickets alarms open."""
