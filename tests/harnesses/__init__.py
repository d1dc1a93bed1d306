"""End-to-end tests of the real agent CLIs (Claude Code, Codex, Gemini CLI), offline."""
