"""The daemon as a long-running service: settings, logs, the claim loop, systemd notify, metrics,
the embedded defaults."""
