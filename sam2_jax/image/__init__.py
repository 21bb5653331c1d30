"""Images: the interactive image predictor (`predictor`), its prompt rule (`prompts`, numpy
only, shared with the exported predictor) and image reading (`io`)."""
