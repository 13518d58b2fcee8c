"""The ``apelier-worker`` command and its sub-commands: run, api, demo, doctor, process,
status, models, style."""
