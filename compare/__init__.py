"""Comparing the modes: the same rides through batch, web and stream, measured side by side."""
