"""Policy stage: operators' rule files, and the engine that turns rules into verdicts."""
