"""The compose stacks: the YAML, the Dockerfiles and the Python that drives them, side by side."""
