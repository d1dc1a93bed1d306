"""Local stand-ins for the model vendors' APIs, playing one scripted, obedient agent."""
