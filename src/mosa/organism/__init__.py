"""Model organisms: small dLLMs built and trained locally, and the LLaDA training objectives."""
