"""Worker-side process set-up; profiles (llm, cpu, ops) come with the fleet tooling."""
