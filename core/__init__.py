"""Switchboard: event-driven, serverless orchestration-as-code."""
