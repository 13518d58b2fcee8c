"""The ``apelier-worker`` command and its sub-commands: run, demo, doctor, process, status, models, style."""
