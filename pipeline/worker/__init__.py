"""The stream worker: a Faust app that runs the billing engine over the usage-events topic."""
