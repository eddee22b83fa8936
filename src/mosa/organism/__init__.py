"""Model organisms: small dLLMs built and trained locally, and the LLaDA training objectives. A plug-in:
mosa reaches the organism through the registries it fills (plugin.py), never by importing it."""
