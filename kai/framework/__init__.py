"""Session, Statement and the plugin/action registries (KAI's scheduler framework)."""
