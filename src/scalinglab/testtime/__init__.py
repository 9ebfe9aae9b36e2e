"""Strategies that turn more inference compute into accuracy."""
