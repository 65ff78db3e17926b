"""Switchboard's own providers; each registers through the `switchboard` entry-point group."""
