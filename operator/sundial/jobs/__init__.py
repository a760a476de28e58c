"""Job types: what a run executes. One module per type; ``execute`` dispatches on the spec."""
