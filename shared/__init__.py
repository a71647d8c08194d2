"""Code shared by the selector service and the trainer: model, data format, checkpoints, client."""
