"""Ops whose bodies are graphs."""
