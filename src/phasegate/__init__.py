"""phasegate: a durable, human-gated design → tests → code orchestrator for AI coding agents."""
